#!/bin/sh
# Sandbox overhead per test: cl-reward --metric pass_rate against a bare
# `python3 -m unittest` of the same file, run one after another (-j 1).
#   BIN=bin sh bench/bench-sandbox.sh      (make bench B=sandbox)
# N (default 60) runs of each, in 5 alternating rounds; the test file holds a small solution and five tests.
set -eu
sh "$(dirname "$0")/cpu.sh"; echo
: "${BIN:=bin}" "${N:=60}"
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "bench-sandbox: $PY is needed" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-sandbox.XXXXXX")
trap 'rm -rf "$T"' EXIT

cat >"$T/code.py" <<'PYEOF'
import collections
def task_func(words):
    counts = collections.Counter(w.lower() for w in words)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
PYEOF
cat >"$T/test.py" <<'PYEOF'
import unittest
class TestCases(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(task_func([]), [])
    def test_one(self):
        self.assertEqual(task_func(["a"]), [("a", 1)])
    def test_case(self):
        self.assertEqual(task_func(["A", "a", "b"]), [("a", 2), ("b", 1)])
    def test_order(self):
        self.assertEqual(task_func(["b", "a"]), [("a", 1), ("b", 1)])
    def test_many(self):
        self.assertEqual(task_func(["x"] * 1000)[0], ("x", 1000))
PYEOF
mkdir "$T/bare"
{ cat "$T/code.py"; printf '\n\n'; cat "$T/test.py"; } >"$T/bare/prog.py"
"$PY" - "$T" "$N" >"$T/recs.jsonl" <<'PYEOF'
import json, sys
t, n = sys.argv[1], int(sys.argv[2])
code, test = open(t + "/code.py").read(), open(t + "/test.py").read()
for i in range(n):
    print(json.dumps({"id": str(i), "task": "code", "metadata": {"test": test},
                      "messages": [], "extracted": {"code": code}}))
PYEOF

# Rounds alternate the two runners so that load from elsewhere on the machine hits both alike;
# the medians of the per-round figures are reported, in wall time and in CPU time (user +
# system of all child processes, from getrusage).
"$PY" - "$T" "$N" "$BIN/cl-reward" "$(nproc)" <<'PYEOF'
import json, os, resource, statistics, subprocess, sys, time
t, n, tool, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rounds = 5
per = max(1, n // rounds)
py = "/usr/bin/python3"

def measure(fn):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    fn()
    w = time.perf_counter() - w0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return w / per * 1000, c / per * 1000

def bare():
    for _ in range(per):
        subprocess.run([py, "-m", "unittest", "-q", "prog"], cwd=t + "/bare", check=True,
                       stderr=subprocess.DEVNULL)

recs = t + "/round.jsonl"
with open(t + "/recs.jsonl") as f, open(recs, "w") as g:
    g.writelines(f.readlines()[:per])

def sandboxed(jobs):
    def run():
        subprocess.run([tool, "-q", "-Z", "--metric", "pass_rate", "-j", str(jobs), "--stats",
                        t + "/st", recs], check=True, stdout=subprocess.DEVNULL)
        st = json.load(open(t + "/st"))["sandbox"]
        assert st["pass"] == per, st
    return run

rows = {"bare": [], "sb": [], "par": []}
for _ in range(rounds):
    rows["bare"].append(measure(bare))
    rows["sb"].append(measure(sandboxed(1)))
    rows["par"].append(measure(sandboxed(cores)))
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
ratio_w = statistics.median(s[0] / b[0] for s, b in zip(rows["sb"], rows["bare"]))
ratio_c = statistics.median(s[1] / b[1] for s, b in zip(rows["sb"], rows["bare"]))
prot = json.load(open(t + "/st"))["sandbox"]["protections"]
print(f"### Sandbox overhead per test ({rounds} alternating rounds of {per} tests, medians)\n")
print("| runner | ms per test (wall) | CPU ms per test | overhead (wall) | overhead (CPU) |")
print("|---|---|---|---|---|")
print(f"| bare `python3 -m unittest prog` | {med['bare'][0]:.1f} | {med['bare'][1]:.1f} | - | - |")
print(f"| `cl-reward --metric pass_rate -j 1` | {med['sb'][0]:.1f} | {med['sb'][1]:.1f} | "
      f"{(ratio_w - 1) * 100:+.0f}% | {(ratio_c - 1) * 100:+.0f}% |")
print(f"| `cl-reward --metric pass_rate -j {cores}` (throughput) | {med['par'][0]:.1f} | "
      f"{med['par'][1]:.1f} | | |\n")
print("Overheads are the median over the rounds of each round's sandboxed/bare ratio, so they "
      "need not equal the ratio of the medians beside them.")
print(f"Protections active: {prot}.")
print(f"Command: `make bench B=sandbox` (N={n}).")
PYEOF
