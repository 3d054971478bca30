#!/bin/sh
# cl-rollout under faults: records that fail while calls of their tree are in flight.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

# states N: N states s1..sN that end with the user, so --branch starts K candidates at once.
states() {
    seeds "$1" | jq -c ".messages = [{role: \"user\", content: \"help me write a poem\"}]"
}

test_expect 'every call refused: --branch writes each record once, with its error, in input order, and exits 69' '
    states 3 >in &&
    { cl-rollout --branch $ROLL --retries 1 --api-base http://127.0.0.1:9/v1 in >out 2>err; rc=$?; } &&
    test $rc = 69 && ! grep -q "AddressSanitizer\|runtime error" err &&
    jq -se "map(.id) == [\"s1\",\"s2\",\"s3\"] and all(.error.message | length > 0)" out &&
    { cl-rollout --branch -Z --no-cache --assistant openai:asst --user openai:usr --retries 0 \
        --api-base http://127.0.0.1:9/v1 in >out 2>err; test $? = 69; } &&
    grep -q "3 records in, 0 out, 3 failed (in the output, with an \"error\" field)" err &&
    { cl-rollout --branch $ROLL --retries 0 --api-base http://127.0.0.1:9/v1 --rejects rej in >out 2>err; test $? = 69; } &&
    ! test -s out && test "$(jq -s length rej)" = 3
'
test_expect '30% injected faults with --retries 1: no crash, every record written once, failed ones keep their usage, exit 69' '
    endless_script >script &&
    mock_start --script script --fault 500=0.3 --seed 5 && states 12 >in &&
    { cl-rollout --branch $ROLL --assistant-mode vanilla --retries 1 --api-base "$MOCK_URL" --stats st in >out 2>err; rc=$?; } &&
    test $rc = 69 && ! grep -q "AddressSanitizer\|runtime error" err &&
    jq -se "map(.id) == [range(1; 13) | \"s\(.)\"]" out &&
    nf=$(jq -s "map(select(has(\"error\"))) | length" out) && test "$nf" -gt 0 &&
    test "$(jq .rollout.failed st)" = "$nf" &&
    test "$(jq -s "map(.usage.calls // 0) | add" out)" = "$(jq .llm.ok st)" &&
    test "$(jq .llm.attempts st)" = "$(mock_count)"
'
test_expect 'every call rate limited beyond the retries: the records fail and the run exits 75 (try later)' '
    mock_start --fault 429=1 --retry-after 0 && states 2 >in &&
    { cl-rollout --branch $ROLL --retries 1 --api-base "$MOCK_URL" in >out 2>err; test $? = 75; } &&
    jq -se "map(.id) == [\"s1\",\"s2\"] and all(.error.message | test(\"HTTP 429\"))" out
'
test_done
