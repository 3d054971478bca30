#!/bin/sh
# BLEU throughput: cl-reward --metric bleu against NLTK's sentence_bleu (the official metric)
# on the same document pairs.  Prints a Markdown block for BENCHMARKS.md.
#   BIN=bin O=build sh bench/bench-bleu.sh      (make bench B=bleu)
# PAIRS (default 2000) document pairs of about 2,500 characters, like the Medium articles of
# MediumDocEdit-Chat (<= 512 tokens).  NLTK runs on NLTK_PAIRS of them (default 300) and its
# rate is extrapolated: it is the slow side.
set -eu
: "${BIN:=bin}" "${O:=build}" "${PAIRS:=2000}" "${NLTK_PAIRS:=300}"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=""
for p in python3 /usr/bin/python3; do
    if "$p" -c "import nltk" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "bench-bleu: python3-nltk is needed (scripts/install-deps)" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-bleu.XXXXXX")
trap 'rm -rf "$T"' EXIT

"$PY" - "$PAIRS" >"$T/pairs.jsonl" <<'PYEOF'
import json, random, sys
rng = random.Random(7)
words = ("the river keeps a slow promise to the valley while small boats carry bread lanterns "
         "paper and quiet news from one town to another every evening a teacher counts the stars "
         "for children who never sleep on time café naïve東京").split()
for i in range(int(sys.argv[1])):
    ref = " ".join(rng.choice(words) for _ in range(420))
    hyp = list(ref)
    for k in range(len(hyp)):
        if rng.random() < 0.08:
            hyp[k] = rng.choice("abcdefghij é")
    print(json.dumps({"id": str(i), "completion": ref, "messages": [],
                      "extracted": {"document": "".join(hyp)}}, ensure_ascii=False))
PYEOF
chars=$(head -1 "$T/pairs.jsonl" | "$PY" -c "import json,sys; print(len(json.load(sys.stdin)['completion']))")

# CPU seconds (user + system) as well as wall seconds: the machine may be shared, and CPU time
# is what a busy machine does not distort.
nltk=$(head -n "$NLTK_PAIRS" "$T/pairs.jsonl" | "$PY" -c "
import json, sys, time, warnings
from nltk.translate.bleu_score import sentence_bleu
warnings.simplefilter('ignore')
pairs = [json.loads(l) for l in sys.stdin]
t, c = time.perf_counter(), time.process_time()
for d in pairs:
    sentence_bleu([d['completion']], d['extracted']['document'])
print(time.perf_counter() - t, time.process_time() - c)")
run() { # jobs -> "wall cpu"
    /usr/bin/time -f "%e %U %S" -o "$T/time" "$BIN/cl-reward" -q -Z --metric bleu -j "$1" \
        "$T/pairs.jsonl" >"$T/out"
    awk "{ print \$1, \$2 + \$3 }" "$T/time"
}
one=$(run 1)
cores=$(nproc)
# The BLEU function alone, the like-for-like comparison with NLTK's compute-only loop.
core=$("$O/tests/bleu-timer" -j 1 <"$T/pairs.jsonl" | awk "{ print \$2, \$3 }")
all=$(run "$cores")
# The results agree with NLTK on the pairs NLTK scored.
head -n 20 "$T/pairs.jsonl" | "$PY" -c "
import json, sys, warnings
from nltk.translate.bleu_score import sentence_bleu
warnings.simplefilter('ignore')
ours = [json.loads(l)['scores']['bleu'] for l in open('$T/out')][:20]
for d, o in zip(map(json.loads, sys.stdin), ours):
    assert abs(sentence_bleu([d['completion']], d['extracted']['document']) - o) < 1e-9
"
# pairs per second from "wall cpu": field 1 = wall, 2 = cpu
rate() { echo "$1" | awk -v n="$2" -v f="$3" "{ printf \"%.0f\", n / \$f }"; }
ratio() { awk -v a="$1" -v b="$2" "BEGIN { printf \"%.0f\", a / b }"; }
nw=$(rate "$nltk" "$NLTK_PAIRS" 1); nc=$(rate "$nltk" "$NLTK_PAIRS" 2)
ow=$(rate "$one" "$PAIRS" 1); oc=$(rate "$one" "$PAIRS" 2)
aw=$(rate "$all" "$PAIRS" 1); ac=$(rate "$all" "$PAIRS" 2)
kw=$(rate "$core" "$PAIRS" 1); kc=$(rate "$core" "$PAIRS" 2)
cat <<MD
### BLEU throughput (character BLEU-4, $PAIRS pairs of $chars characters)

| implementation | pairs/s (wall) | pairs per CPU-second | vs NLTK (wall) | vs NLTK (CPU) |
|---|---|---|---|---|
| NLTK 3.8 \`sentence_bleu\`, compute only ($NLTK_PAIRS pairs) | $nw | $nc | 1× | 1× |
| \`bleu_char\` alone, compute only, one thread | $kw | $kc | $(ratio "$kw" "$nw")× | $(ratio "$kc" "$nc")× |
| \`cl-reward --metric bleu -j 1\`, end to end (parse, score, write) | $ow | $oc | $(ratio "$ow" "$nw")× | $(ratio "$oc" "$nc")× |
| \`cl-reward --metric bleu -j $cores\`, end to end | $aw | $ac | $(ratio "$aw" "$nw")× | $(ratio "$ac" "$nc")× |

Scores checked equal to NLTK's (|diff| < 1e-9) on the first 20 pairs.
Command: \`make bench B=bleu\` (PAIRS=$PAIRS NLTK_PAIRS=$NLTK_PAIRS).
MD
