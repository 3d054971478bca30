#!/bin/sh
# cl-seed error paths: every bad row names file, line (row) and field; usage errors exit 2.
. "$(dirname "$0")/lib.sh"

# fails CODE PATTERN CMD...: CMD exits CODE, writes nothing on stdout, and stderr matches PATTERN
fails() {
    code=$1 pat=$2; shift 2
    "$@" >out 2>err; rc=$?
    test "$rc" = "$code" || { echo "exit $rc, wanted $code"; cat err; return 1; }
    grep -q -- "$pat" err || { echo "stderr lacks: $pat"; cat err; return 1; }
}

test_expect 'a math row without solution exits 65 naming file, line and field' '
    printf "%s\n" "{\"problem\":\"1+1?\",\"solution\":\"\$\\\\boxed{2}\$\"}" "{\"problem\":\"2+2?\"}" >in.jsonl &&
    fails 65 "in.jsonl:2: --preset math: field .solution. is missing" cl-seed -Z --preset math in.jsonl
'
test_expect 'a math solution without a boxed answer is refused, not half-filled' '
    printf "{\"problem\":\"1+1?\",\"solution\":\"two\"}\n" >in &&
    fails 65 "in:1: .*has no .boxed{} answer" cl-seed -q -Z --preset math in && ! grep -q . out
'
test_expect 'a bigcodebench row without entry_point names the field' '
    printf "{\"task_id\":\"t\",\"instruct_prompt\":\"i\",\"code_prompt\":\"def f():\\\\n\",\"canonical_solution\":\"  return 1\",\"test\":\"x\"}\n" >in &&
    fails 65 "in:1: --preset bigcodebench: field .entry_point. is missing" cl-seed -Z --preset bigcodebench in
'
test_expect 'a field of the wrong type is named with what it is' '
    printf "{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}],\"completion\":\"x\"}\n" >in &&
    fails 65 "field .prompt. should be a string, not array" cl-seed -Z in
'
test_expect 'an empty required field is an error' '
    printf "{\"title\":\"  \",\"text\":\"t\"}\n" >in &&
    fails 65 "field .title. is empty" cl-seed -Z --preset medium --recent 1 in
'
test_expect 'abgcoqa: a bad ambiguity label and a missing target question are named' '
    printf "{\"story\":\"s\",\"target_turn\":{\"question\":\"q\"},\"ambiguity\":\"maybe\"}\n" >in &&
    fails 65 "field .ambiguity. is .maybe., not .ambiguous. or .non_ambiguous." cl-seed -Z --preset abgcoqa in &&
    printf "{\"story\":\"s\",\"target_turn\":{},\"ambiguity\":\"ambiguous\"}\n" >in2 &&
    fails 65 "in2:1: --preset abgcoqa: target_turn: field .question. is missing" cl-seed -Z --preset abgcoqa in2
'
test_expect 'medium: a timestamp that is not a date is an error' '
    printf "{\"title\":\"t\",\"text\":\"x\",\"timestamp\":\"last week\"}\n" >in &&
    fails 65 "field .timestamp. is not a date" cl-seed -Z --preset medium in
'
test_expect 'a split value that is no split is an error' '
    printf "{\"prompt\":\"p\",\"completion\":\"c\",\"split\":\"holdout\"}\n" >in &&
    fails 65 "field .split. is \"holdout\", not train, test or validation" cl-seed -Z in
'
test_expect 'two rows with one id but different prompts are refused' '
    printf "%s\n" "{\"id\":\"x\",\"prompt\":\"p\",\"completion\":\"c\"}" "{\"id\":\"x\",\"prompt\":\"q\",\"completion\":\"c\"}" >in &&
    fails 65 "in:2: id .x. was already used" cl-seed -Z in
'
test_expect 'a bad row in a JSON array names the line it starts on and its row number' '
    printf "[\n  {\"prompt\": \"a\", \"completion\": \"b\"},\n  {\n    \"prompt\": \"c\"\n  }\n]\n" >in.json &&
    fails 65 "in.json:3: row 2: --preset generic: field .completion. is missing" cl-seed -Z in.json
'
test_expect 'broken JSON arrays: no closing bracket, trailing comma, text after it, bad JSON in a row' '
    printf "[{\"prompt\":\"a\",\"completion\":\"b\"}\n" >a.json && fails 65 "a.json:1: row 1: the JSON array has no closing" cl-seed -Z a.json &&
    printf "[{\"prompt\":\"a\",\"completion\":\"b\"},\n]\n" >b.json && fails 65 "b.json:2: row 2: trailing comma" cl-seed -Z b.json &&
    printf "[{\"prompt\":\"a\",\"completion\":\"b\"}] x\n" >c.json && fails 65 "c.json:1: text after the closing" cl-seed -Z c.json &&
    printf "[{\"prompt\":\"a\",\"completion\":\"b\"},\n {\"prompt\": tru}]\n" >d.json && fails 65 "d.json:2: row 2: byte" cl-seed -Z d.json &&
    printf "[1]\n" >e.json && fails 65 "e.json:1: row 1: .*not a JSON object" cl-seed -Z e.json &&
    printf "[{\"prompt\":\"a\nb\",\"completion\":\"c\"}]\n" >f.json && fails 65 "f.json:2: row 1: line break inside a string" cl-seed -Z f.json
'
test_expect 'an empty JSON array is no rows, not an error' '
    printf "[ ]\n" >in.json && cl-seed -q -Z in.json >out && ! test -s out
'
test_expect '--skip-bad counts bad rows, copies them to --rejects and keeps the good ones' '
    printf "%s\n" "{\"problem\":\"a\",\"solution\":\"\$\\\\boxed{1}\$\"}" "{\"problem\":\"b\"}" "not json" \
        "{\"problem\":\"c\",\"solution\":\"none\"}" "{\"problem\":\"d\",\"solution\":\"\$\\\\boxed{4}\$\"}" >in &&
    cl-seed -Z --preset math --skip-bad --rejects rej --stats st.json in >out 2>err && test "$(wc -l <out)" = 2 &&
    test "$(wc -l <rej)" = 3 && grep -q "\"problem\":\"b\"" rej && grep -qx "not json" rej &&
    grep -q "in:2: --preset math: field .solution. is missing (skipped)" err && jq -e ".rejected == 3" st.json
'
test_expect 'usage errors exit 2: unknown preset, flags of another preset, bad ratio or split' '
    echo "{}" >in &&
    fails 2 "not one of math, bigcodebench" cl-seed --preset nope in &&
    fails 2 "apply to --preset medium only" cl-seed --preset math --recent 0.5 in &&
    fails 2 "apply to --preset medium only" cl-seed --max-tokens 10 in &&
    fails 2 "abgcoqa only" cl-seed --preset math --history in &&
    fails 2 "--test-ratio" cl-seed --test-ratio 1.5 in &&
    fails 2 "--split: .dev2. is not" cl-seed --split dev2 in &&
    fails 2 "--recent" cl-seed --preset medium --recent 0 in &&
    fails 2 "--limit" cl-seed --limit -1 in &&
    fails 2 "cannot be used together" cl-seed --split-ids x --test-ratio 0.5 in
'
test_expect 'a missing input or --split-ids file exits 66; a bad --split-ids line exits 65 with its line' '
    fails 66 "nothere" cl-seed -Z nothere.jsonl &&
    echo "{\"prompt\":\"p\",\"completion\":\"c\"}" >in && fails 66 "ids.tsv" cl-seed -Z --split-ids ids.tsv in &&
    printf "a train\nb\n" >ids.tsv && fails 65 "ids.tsv:2: expected .ID SPLIT." cl-seed -Z --split-ids ids.tsv in &&
    printf "a train\nb holdout\n" >ids2 && fails 65 "ids2:2: the split is not" cl-seed -Z --split-ids ids2 in &&
    printf "{\"id\":\"a\"}\n" >ids3 && fails 65 "ids3:1: needs string fields" cl-seed -Z --split-ids ids3 in
'
test_done
