#!/bin/sh
# BLEU throughput: cl-reward --metric bleu against NLTK's sentence_bleu (the official metric)
# on the same document pairs.  Prints a Markdown block for BENCHMARKS.md.
#   BIN=bin O=build sh bench/bench-bleu.sh      (make bench B=bleu)
# Three corpora of PAIRS (default 2000) pairs of about 2,400 characters, the length of the
# Medium articles of MediumDocEdit-Chat (<= 512 tokens):
#   edited   real English prose (the licence texts every Debian system ships in
#            /usr/share/common-licenses) against a copy with about 11% of its words replaced,
#            dropped, inserted or swapped: what document editing produces;
#   noise    a 40-word vocabulary with 8% of the characters replaced at random (the corpus of
#            the first version of this benchmark): many short shared runs;
#   unrelated  two different windows of the same prose: nothing shared but English.
# NLTK runs on NLTK_PAIRS of each (default 300), best of three rounds; ours on all of them,
# best of ROUNDS (default 5).  CPU time is the measure: the machine may be shared, and CPU
# time is what a busy machine distorts least.  cl-reward's records go to a file, and once more
# to /dev/null at the default -j: the file system's work for the written pages is not the
# tool's, and NLTK's side writes nothing.
set -eu
: "${BIN:=bin}" "${O:=build}" "${PAIRS:=2000}" "${NLTK_PAIRS:=300}" "${ROUNDS:=5}"
PY=""
for p in python3 /usr/bin/python3; do
    if "$p" -c "import nltk" 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "bench-bleu: python3-nltk is needed (scripts/install-deps)" >&2; exit 1; }
[ -d /usr/share/common-licenses ] || { echo "bench-bleu: /usr/share/common-licenses is missing" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-bleu.XXXXXX")
trap 'rm -rf "$T"' EXIT

"$PY" - "$PAIRS" "$T" <<'PYEOF'
import glob, json, random, re, sys
n, out = int(sys.argv[1]), sys.argv[2]
text = " ".join(open(f, encoding="utf-8", errors="replace").read()
                for f in sorted(glob.glob("/usr/share/common-licenses/*")))
words = re.sub(r"\s+", " ", text).split(" ")

def window(rng):
    k, doc = rng.randrange(0, len(words) - 600), []
    while len(" ".join(doc)) < 2400:
        doc.append(words[k])
        k += 1
    return doc

def edited(rng, ref):
    hyp = []
    for w in ref:
        r = rng.random()
        if r < 0.04:
            continue
        if r < 0.08:
            hyp.append(rng.choice(words))
            continue
        hyp.append(w)
        if r < 0.11:
            hyp.append(rng.choice(words))
    for _ in range(3):
        a = rng.randrange(len(hyp) - 1)
        hyp[a], hyp[a + 1] = hyp[a + 1], hyp[a]
    return " ".join(hyp)

def noise(rng):
    vocab = ("the river keeps a slow promise to the valley while small boats carry bread "
             "lanterns paper and quiet news from one town to another every evening a teacher "
             "counts the stars for children who never sleep on time café naïve東京").split()
    ref = " ".join(rng.choice(vocab) for _ in range(420))
    hyp = "".join(rng.choice("abcdefghij é") if rng.random() < 0.08 else c for c in ref)
    return ref, hyp

def record(i, ref, hyp):
    return json.dumps({"id": str(i), "completion": ref, "messages": [],
                       "extracted": {"document": hyp}}, ensure_ascii=False)

rng = random.Random(7)
with open(out + "/edited.jsonl", "w") as f:
    for i in range(n):
        ref = window(rng)
        print(record(i, " ".join(ref), edited(rng, ref)), file=f)
with open(out + "/noise.jsonl", "w") as f:
    for i in range(n):
        print(record(i, *noise(rng)), file=f)
with open(out + "/unrelated.jsonl", "w") as f:
    for i in range(n):
        print(record(i, " ".join(window(rng)), " ".join(window(rng))), file=f)
PYEOF

nltk_us() { # corpus -> NLTK CPU microseconds per pair, best of three rounds
    head -n "$NLTK_PAIRS" "$T/$1.jsonl" | "$PY" -c "
import json, sys, time, warnings
from nltk.translate.bleu_score import sentence_bleu
warnings.simplefilter('ignore')
pairs = [json.loads(l) for l in sys.stdin]
best = None
for _ in range(3):
    c = time.process_time()
    for d in pairs:
        sentence_bleu([d['completion']], d['extracted']['document'])
    c = time.process_time() - c
    best = c if best is None or c < best else best
print(best / len(pairs) * 1e6)"
}
kernel_us() { # corpus -> bleu_char CPU microseconds per pair, one thread, best of ROUNDS
    "$O/tests/bleu-timer" -j 1 -r "$ROUNDS" <"$T/$1.jsonl" | awk -v n="$PAIRS" '{ print $3 / n * 1e6 }'
}
tool() { # corpus jobs [sink] -> "wall_us cpu_us" per pair for cl-reward end to end, each the
          # best of ROUNDS runs (getrusage: /usr/bin/time's 10 ms steps are too coarse here);
          # the records go to a file in $T unless a sink is named
    "$PY" - "$BIN/cl-reward" "$T/$1.jsonl" "${3:-$T/out.$1}" "$2" "$ROUNDS" "$PAIRS" <<'PYEOF'
import resource, subprocess, sys, time
prog, data, out, jobs, rounds, pairs = sys.argv[1:]
wall = cpu = None
for _ in range(int(rounds)):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run([prog, "-q", "-Z", "--metric", "bleu", "-j", jobs, data], stdout=f, check=True)
    w = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    wall = w if wall is None or w < wall else wall
    cpu = c if cpu is None or c < cpu else cpu
print("%.1f %.1f" % (wall / int(pairs) * 1e6, cpu / int(pairs) * 1e6))
PYEOF
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }
cores=$(nproc)

rows=""
for c in edited noise unrelated; do
    n=$(nltk_us "$c")
    k=$(kernel_us "$c")
    one=$(tool "$c" 1)
    all=$(tool "$c" "$cores")
    null=$(tool "$c" "$cores" /dev/null)
    onec=${one#* }
    onew=${one% *}
    allc=${all#* }
    allw=${all% *}
    nullw=${null% *}
    rows="$rows| $c | $(printf %.0f "$n") | $(printf %.1f "$k") ($(ratio "$n" "$k")×) | $onec ($(ratio "$n" "$onec")×) | $allc ($(ratio "$n" "$allc")×) | $onew ($(ratio "$n" "$onew")×) | $allw ($(ratio "$n" "$allw")×) | $nullw ($(ratio "$n" "$nullw")×) |
"
    # The scores are NLTK's, on the pairs NLTK scored.
    head -n 20 "$T/$c.jsonl" | "$PY" -c "
import json, sys, warnings
from nltk.translate.bleu_score import sentence_bleu
warnings.simplefilter('ignore')
ours = [json.loads(l)['scores']['bleu'] for l in open('$T/out.$c')][:20]
for d, o in zip(map(json.loads, sys.stdin), ours):
    assert abs(sentence_bleu([d['completion']], d['extracted']['document']) - o) < 1e-9, (d['id'], o)
"
done
chars=$(head -1 "$T/edited.jsonl" | "$PY" -c "import json,sys; print(len(json.load(sys.stdin)['completion']))")

load=$(cut -d' ' -f1-3 /proc/loadavg)
cat <<MD
### BLEU throughput (character BLEU-4, $PAIRS pairs of about $chars characters per corpus)

$(sh "$(dirname "$0")/cpu.sh")

Microseconds per pair; in brackets, how many times faster than NLTK on one core.  CPU columns
are what a busy machine distorts least; the wall columns hold only on an idle one (load
average after the run: $load).  The records go to a file, but in the last column to
/dev/null: the file system's own work for the written pages, which NLTK's side does not do.

| corpus | NLTK 3.8 \`sentence_bleu\`, CPU | \`bleu_char\`, CPU, one thread | \`cl-reward -j 1\` end to end, CPU | \`cl-reward -j $cores\` end to end, CPU | \`-j 1\` wall | \`-j $cores\` wall | \`-j $cores\` wall, to /dev/null |
|---|---|---|---|---|---|---|---|
$rows
Scores checked equal to NLTK's (|diff| < 1e-9) on the first 20 pairs of each corpus.
Command: \`make bench B=bleu\` (PAIRS=$PAIRS NLTK_PAIRS=$NLTK_PAIRS ROUNDS=$ROUNDS).
MD
