#!/bin/sh
# The shipped examples/: every file converts with its preset, and every code task's unittest
# passes against its reference solution (and fails against a wrong one) in a real python3.
. "$(dirname "$0")/lib.sh"
E="$ROOT/examples"

test_expect 'every example math problem becomes a seed with a boxed answer' '
    cl-seed -Z --preset math "$E/math.jsonl" >out 2>err && test "$(wc -l <out)" -ge 24 &&
    test "$(wc -l <out)" = "$(wc -l <"$E/math.jsonl")" && ! grep -q skipped err &&
    jq -e "select(.metadata.answer == \"\" or .metadata.answer == null)" out >bad; ! test -s bad
'
test_expect 'example math answers include nested braces and the brace-less form' '
    cl-seed -q -Z --preset math "$E/math.jsonl" | jq -r .metadata.answer >ans &&
    grep -qx "\\\\left(3, \\\\frac{\\\\pi}{2}\\\\right)" ans && grep -qx 36 ans && grep -qx "3\\\\sqrt{2}" ans
'
test_expect 'every example code task becomes a code seed' '
    cl-seed -Z --preset bigcodebench "$E/bigcodebench.jsonl" >out 2>err && test "$(wc -l <out)" -ge 20 &&
    test "$(wc -l <out)" = "$(wc -l <"$E/bigcodebench.jsonl")" && ! grep -q skipped err
'
test_expect 'every example code task passes its unittest with the reference and fails with a wrong body' '
    command -v python3 >/dev/null || { echo "SKIP: python3 is needed (scripts/install-deps installs it)"; exit 1; }
    cl-seed -q -Z --preset bigcodebench "$E/bigcodebench.jsonl" >seeds &&
    cat >run.py <<PY &&
import io, json, sys, unittest
# One interpreter, a fresh namespace per program: the code and its test run exactly as a
# script would, without paying for 48 interpreter start-ups.
def passes(code, test):
    ns = {"__name__": "example"}
    try:
        exec(compile(code + "\\n" + test, "example", "exec"), ns)
    except Exception as exc:
        return False, repr(exc)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(ns["TestCases"])
    out = io.StringIO()
    result = unittest.TextTestRunner(stream=out, verbosity=0).run(suite)
    return result.wasSuccessful() and result.testsRun > 0, out.getvalue()
ok = bad = 0
for line in open("seeds"):
    s = json.loads(line)
    m = s["metadata"]
    good, log = passes(s["completion"], m["test"])
    if not good:
        print("reference fails:", s["id"], log); bad += 1
    wrong, _ = passes(m["code_prompt"] + "    return None\\n", m["test"])
    if wrong:
        print("wrong body passes:", s["id"]); bad += 1
    ok += 1
print(ok, "tasks checked,", bad, "problems")
sys.exit(1 if bad or ok == 0 else 0)
PY
    python3 run.py
'
test_expect 'every example article becomes a document seed within the paper length limit' '
    cl-seed -Z --preset medium --recent 1 "$E/medium.jsonl" >out 2>err && test "$(wc -l <out)" -ge 20 &&
    test "$(wc -l <out)" = "$(wc -l <"$E/medium.jsonl")" && ! grep -q "left out" err
'
test_expect 'every example Abg-CoQA row becomes a qa seed, both labels present' '
    cl-seed -Z --preset abgcoqa "$E/abgcoqa.jsonl" >out 2>err && test "$(wc -l <out)" -ge 10 &&
    test "$(wc -l <out)" = "$(wc -l <"$E/abgcoqa.jsonl")" &&
    test "$(jq -r .completion out | sort -u | tr "\n" " ")" = "ambiguous non_ambiguous "
'
test_expect 'the example generic rows become seeds, official names and own split included' '
    cl-seed -q -Z "$E/generic.jsonl" >out && test "$(wc -l <out)" = "$(wc -l <"$E/generic.jsonl")" &&
    test "$(jq -r "select(.prompt|startswith(\"Explain what a hash table\")) | .split" out)" = test &&
    test "$(jq -r "select(.prompt|startswith(\"Convert 5 kilometres\")) | .task" out)" = math
'
test_done
