#!/bin/sh
# cl-rollout: retries, unreadable replies and per-record failures.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

test_expect 'server errors are retried and the record comes out whole' '
    standard_script >script && mock_start --script script && seeds 2 "@fail-first:1:503 " >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" --stats st in >out &&
    jq -se "length == 2 and all(.done_reason == \"terminated\" and (has(\"error\") | not))" out &&
    test "$(jq -s "map(select(.fault == \"503\")) | length" "$MOCK_LOG")" = 6 &&
    jq -e ".llm.retries == 6 and .rollout.failed == 0" st
'
test_expect 'a record whose call is refused is written with an error, the others are fine, and the exit status is 1' '
    standard_script >script && mock_start --script script &&
    { seeds 1; seeds 1 "@fault:400 " | jq -c ".id = \"bad\""; seeds 1 | jq -c ".id = \"s3\""; } >in &&
    { cl-rollout --full -Z --no-cache --assistant openai:asst --user openai:usr --api-base "$MOCK_URL" --stats st in >out 2>err; test $? = 1; } &&
    jq -se "map(.id) == [\"s1\",\"bad\",\"s3\"]" out &&
    jq -se ".[1] | .error.tool == \"cl-rollout\" and (.error.message | contains(\"400\")) and (has(\"messages\") | not)" out &&
    jq -se "[.[0], .[2]] | all(.done_reason == \"terminated\")" out &&
    grep -q "in:2:" err && jq -e ".rollout.failed == 1" st
'
test_expect 'an endpoint that stays down fails its records after the retries, with exit 69 (unavailable)' '
    mock_start && seeds 1 "@fault:500 " >in &&
    { cl-rollout --full $ROLL --retries 1 --api-base "$MOCK_URL" in >out 2>err; test $? = 69; } &&
    jq -e ".error.message | length > 0" out && test "$(mock_count)" = 2
'
test_expect 'an unreadable simulator reply is asked again with a new sample key, then the record fails' '
    rule "role-playing a person" "I would rather not answer in JSON." >script &&
    mock_start --script script && seeds 1 >in &&
    { cl-rollout --full $ROLL --parse-retries 2 --api-base "$MOCK_URL" --stats st in >out 2>err; test $? = 1; } &&
    test "$(mock_count)" = 3 && test "$(jq -s "map(.body.seed) | unique | length" "$MOCK_LOG")" = 3 &&
    jq -e ".error.message | contains(\"user simulator reply could not be read after 3 attempts\")" out &&
    jq -e ".usage.calls == 3" out && jq -e ".rollout.reasks == 2" st
'
test_expect 'a branch whose proactive candidate cannot be read fails once its other calls are back, without a crash' '
    { rule "helping a user with tasks such as writing" "no JSON here"; endless_script; } >script &&
    mock_start --script script && seeds 3 >in &&
    { cl-rollout --branch $ROLL -k 2 --samples 3 --parse-retries 1 --api-base "$MOCK_URL" in >out 2>err; test $? = 1; } &&
    test "$(jq -s length out)" = 3 &&
    jq -s -e "all(.error.message | contains(\"assistant reply could not be read after 2 attempts\"))" out >/dev/null
'
test_expect 'a reply that is readable on a later ask is used and the record is fine' '
    standard_script >script && mock_start --script script --fault null=0.3 --seed 3 && seeds 1 >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" --stats st in >out &&
    jq -e ".done_reason == \"terminated\" and .messages[0].content == \"help me write a poem\"" out &&
    n=$(jq -r .rollout.reasks st) && test "$n" -gt 0 &&
    test "$(jq .usage.calls out)" = "$((5 + n))" && test "$(mock_count)" = "$((5 + n))"
'
test_expect 'a record without a hidden goal fails with a message that says so' '
    mock_start && echo "{\"id\":\"x\"}" >in &&
    { cl-rollout --full $ROLL --api-base "$MOCK_URL" in >out 2>err; test $? = 1; } &&
    jq -e ".error.message | contains(\"hidden goal\")" out && test "$(mock_count)" = 0
'
test_expect 'an assistant role without a model is a configuration error (78)' '
    standard_script >script && mock_start --script script && seeds 1 >in &&
    { cl-rollout --full -q -Z --no-cache --user openai:usr --api-base "$MOCK_URL" in >out 2>err; test $? = 78; } &&
    grep -q -- "--assistant SPEC" err && ! test -s out && test "$(mock_count)" = 0 &&
    { cl-rollout --branch -q -Z --no-cache --assistant openai:a --api-base "$MOCK_URL" in >out 2>err; test $? = 78; } &&
    grep -q -- "--user SPEC" err
'
test_done
