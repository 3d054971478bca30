#!/bin/sh
# cl-pairs --dpo against a Python peer with the official converter's logic (group the scored
# candidates by conversation and turn, highest score against lowest, skip small gaps; json
# module, the standard library's C-accelerated parser) on the same branch records.  Also times
# --advance and --to-flat, which have no peer.  Prints a Markdown block for BENCHMARKS.md.
#   BIN=bin O=build sh bench/bench-pairs.sh      (make bench B=pairs)
# RECORDS (default 10000) scored branch records shaped like the data engine's: K 2 candidates,
# S 3 futures of w 2 turns, histories of 1 to 13 messages, messages of about 300 characters.
set -eu
: "${BIN:=bin}" "${O:=build}" "${RECORDS:=10000}"
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-pairs.XXXXXX")
trap 'rm -rf "$T"' EXIT

python3 - "$RECORDS" >"$T/branches.jsonl" <<'PYEOF'
import json, random, sys
rng = random.Random(11)
words = "please could you write the function again but shorter and explain the edge cases".split()
def text():
    return " ".join(rng.choice(words) for _ in range(50))
def msgs(n, first):
    roles = ["user", "assistant"] if first == "user" else ["assistant", "user"]
    return [{"role": roles[i % 2], "content": text()} for i in range(n)]
for i in range(int(sys.argv[1])):
    turn = rng.randrange(7)
    cands = []
    for k in range(2):
        futs = []
        for s in range(3):
            r = rng.random()
            futs.append({"messages": msgs(4, "user"), "terminated": False,
                         "scores": {"accuracy": rng.randrange(2), "interactivity": rng.random(), "tokens": 200},
                         "R": r})
        rs = [f["R"] for f in futs]
        mean = sum(rs) / 3
        std = (sum((x - mean) ** 2 for x in rs) / 3) ** 0.5
        cands.append({"id": "c%d" % k, "content": text(), "source": "openai:m", "futures": futs,
                      "mr": {"mean": mean, "std": std, "n": 3}})
    print(json.dumps({"id": "conv-%d" % i, "task": "math", "prompt": text(),
                      "messages": msgs(2 * turn + 1, "user"), "turn": turn, "done": False,
                      "candidates": cands}))
PYEOF
size=$(du -m "$T/branches.jsonl" | cut -f1)

cat >"$T/peer.py" <<'PYEOF'
import json, sys
groups, order = {}, []
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["id"], r["turn"])
    if key not in groups:
        groups[key] = (r["messages"], [])
        order.append(key)
    groups[key][1].extend(r["candidates"])
out = sys.stdout
for key in order:
    prompt, cands = groups[key]
    if len(cands) < 2:
        continue
    ranked = sorted(range(len(cands)), key=lambda i: (-cands[i]["mr"]["mean"], cands[i]["mr"]["std"], i))
    best, worst = cands[ranked[0]], cands[ranked[-1]]
    if best["mr"]["mean"] - worst["mr"]["mean"] < 0.02 - 1e-12:
        continue
    out.write(json.dumps({"id": "%s/t%d" % key, "prompt": prompt,
                          "chosen": [{"role": "assistant", "content": best["content"]}],
                          "rejected": [{"role": "assistant", "content": worst["content"]}],
                          "score_chosen": best["mr"]["mean"], "score_rejected": worst["mr"]["mean"]}) + "\n")
PYEOF

# measure COMMAND...: wall and CPU seconds (user + system) of the command, best wall of 3.
measure() {
    best=""
    for _ in 1 2 3; do
        /usr/bin/time -f "%e %U %S" -o "$T/time" "$@" >"$T/out" 2>/dev/null
        w=$(cut -d' ' -f1 "$T/time"); c=$(awk '{ print $2 + $3 }' "$T/time")
        if [ -z "$best" ] || awk -v a="$w" -v b="$bw" 'BEGIN { exit !(a < b) }'; then best=1; bw=$w; bc=$c; fi
    done
    echo "$bw $bc"
}
# pair_keys: "id score_chosen score_rejected" per pair on stdin, for comparing the two sides.
pair_keys() {
    python3 -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l); print(r['id'], r['score_chosen'], r['score_rejected'])"
}
row() { # label wall cpu
    awk -v l="$1" -v w="$2" -v c="$3" -v n="$RECORDS" -v mb="$size" \
        'BEGIN { printf "| %s | %.2f | %.2f | %.0f | %.0f |\n", l, w, c, n / c, mb / c }'
}

set -- $(measure "$BIN/cl-pairs" -q -Z --dpo "$T/branches.jsonl"); cw=$1 cc=$2
"$BIN/cl-pairs" -q -Z --dpo "$T/branches.jsonl" | pair_keys >"$T/ours"
set -- $(measure python3 "$T/peer.py" "$T/branches.jsonl"); pw=$1 pc=$2
python3 "$T/peer.py" "$T/branches.jsonl" | pair_keys >"$T/theirs"
cmp -s "$T/ours" "$T/theirs" && same="the same $(wc -l <"$T/ours") pairs" || same="DIFFERENT pairs"
set -- $(measure "$BIN/cl-pairs" -q -Z --advance "$T/branches.jsonl"); aw=$1 ac=$2
set -- $(measure "$BIN/cl-pairs" -q -Z --to-flat "$T/branches.jsonl"); fw=$1 fc=$2

echo "### cl-pairs ($RECORDS branch records, $size MB of plain JSONL, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date +%F))"
echo
sh "$(dirname "$0")/cpu.sh"
echo
echo "Both sides give $same (ids and scores compared)."
echo
echo "| run | wall s | CPU s | records per CPU s | MB per CPU s |"
echo "|---|---|---|---|---|"
row "cl-pairs --dpo" "$cw" "$cc"
row "Python peer (official grouping, json module)" "$pw" "$pc"
row "cl-pairs --advance" "$aw" "$ac"
row "cl-pairs --to-flat" "$fw" "$fc"
echo
awk -v a="$cc" -v b="$pc" 'BEGIN { printf "CPU of the peer / CPU of cl-pairs --dpo: %.2f (above 1: cl-pairs is faster).\n", b / a }'
