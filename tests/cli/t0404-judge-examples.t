#!/bin/sh
# The EXAMPLES of cl-judge(1) run as written, against the loopback mock (the judge's base URL
# comes from OPENAI_BASE_URL; the local server's URL of the second example is pointed at the
# mock).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/mockjudge.sh"
F="$FIXTURES/judge"
PAGE="$ROOT/man/cl-judge.1"

# example N: the N-th literal block of the page as a shell script.
example() {
    awk -v n="$1" '/^\.Bd -literal/ { k++; on = (k == n); next } /^\.Ed/ { on = 0 } on' "$PAGE" |
        sed 's/\\e/\\/g'
}

judge_rules() {
    printf "%s\n" \
        "{\"match\": \"State the final answer\", \"reply\": \"{\\\"final_completion\\\": \\\"42\\\"}\"}" \
        "{\"match\": \"final answer to a question is correct\", \"reply\": \"{\\\"accuracy\\\": 1}\"}" \
        "{\"match\": \"any number from 0 to 1\", \"reply\": \"{\\\"interactivity\\\": 0.5}\"}" \
        "{\"match\": \"any number from 1 to 3\", \"reply\": \"{\\\"interactivity\\\": 3}\"}"
}

test_expect 'the page has three examples' '
    test "$(grep -c "^\.Bd -literal" "$PAGE")" = 3 && example 1 | grep -q "^cl-judge "
'

test_expect 'example 1 extracts the answer, judges accuracy and rates interactivity three times' '
    judge_rules >s.jsonl && start_mock --script s.jsonl && zstd -q "$F/full.jsonl" -o math-online.zst &&
    example 1 >ex1.sh && XDG_CACHE_HOME=$PWD/cache OPENAI_BASE_URL=$MOCK_URL sh ex1.sh 2>err &&
    records math-online.judged.zst | jq -e ".extracted.answer == \"42\" and .scores.accuracy == 1 and .scores.interactivity == 0.5 and .judge.interactivity.n == 3" &&
    requests | jq -s -e "length == 7 and all(.[]; .temperature == 0.7)"
'

test_expect 'example 2 judges every future on the paper scale' '
    judge_rules >s.jsonl && start_mock --script s.jsonl && zstd -q "$F/branch.jsonl" -o turn3.branches.zst &&
    example 2 | sed "s|http://localhost:8000/v1|$MOCK_URL|" >ex2.sh &&
    XDG_CACHE_HOME=$PWD/cache sh ex2.sh 2>err &&
    records turn3.judged.zst | jq -e "[.candidates[].futures[].scores.interactivity] == [1, 1, 1] and .candidates[0].futures[0].judge.interactivity.scale == \"paper-train\""
'

test_expect 'example 3 prints the Markdown table and draws the chart' '
    zstd -q "$F/report-base.jsonl" -o base.scored.zst && zstd -q "$F/report-online.jsonl" -o online.scored.zst &&
    example 3 >ex3.sh && sh ex3.sh >table.md 2>err &&
    grep -q "^| Rel. improv. online vs base " table.md && test -s table1.png
'
test_done
