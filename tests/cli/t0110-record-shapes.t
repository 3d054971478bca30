#!/bin/sh
# Wrong-shaped fields of cl-records(5) are malformed input: exit 65 with file:line and the
# field's path, before anything is paid for; never a libjq assertion, never silently dropped.
. "$(dirname "$0")/lib.sh"

# Nothing listens on port 9: a tool that sent a call would fail with 69, not 65.
ROLL="-q -Z --no-cache --assistant openai:a --user openai:u --api-base http://127.0.0.1:9/v1"

# expect_65 WHAT: the last command exited 65 and err names in:1 and WHAT.
expect_65() { test "$rc" = 65 && grep -q "^cl-[a-z]*: in:1: $1\$" err && ! test -s out; }

for mode in --full --branch; do
    test_expect "cl-rollout $mode: a message that is not an object, or lacks role or content, or has a numeric role" '
        for m in "[\"hi\"]|messages\\[0\\]: a string where an object belongs" \
                 "[null]|messages\\[0\\]: null where an object belongs" \
                 "[{\"role\":\"user\"}]|messages\\[0\\].content: missing" \
                 "[{\"content\":\"x\"}]|messages\\[0\\].role: missing" \
                 "[{\"role\":5,\"content\":\"x\"}]|messages\\[0\\].role: a number where a string belongs" \
                 "\"hello\"|messages: a string where an array belongs"; do
            printf "{\"id\":\"a\",\"prompt\":\"p\",\"messages\":%s}\n" "${m%%|*}" >in &&
            { cl-rollout '$mode' $ROLL in >out 2>err; rc=$?; } && expect_65 "${m#*|}" || return 1
        done
    '
done
test_expect 'cl-rollout --branch: a prompt that is not a string' '
    echo "{\"id\":\"a\",\"prompt\":5}" >in &&
    { cl-rollout --branch $ROLL in >out 2>err; rc=$?; } && expect_65 "prompt: a number where a string belongs"
'
test_expect 'cl-reward --reward verl: a candidate that is not an object' '
    echo "{\"id\":\"a\",\"prompt\":\"p\",\"completion\":\"x\",\"candidates\":[5]}" >in &&
    { cl-reward -q -Z --reward verl --tokens words --metric bleu in >out 2>err; rc=$?; } &&
    expect_65 "candidates\\[0\\]: a number where an object belongs"
'
test_expect 'cl-reward --metric tokens: messages that are numbers, or with a numeric role' '
    echo "{\"id\":\"a\",\"messages\":[5,6]}" >in &&
    { cl-reward -q -Z --metric tokens --tokens words in >out 2>err; rc=$?; } &&
    expect_65 "messages\\[0\\]: a number where an object belongs" &&
    echo "{\"id\":\"a\",\"messages\":[{\"role\":5,\"content\":\"a b c\"}]}" >in &&
    { cl-reward -q -Z --metric tokens --tokens words in >out 2>err; rc=$?; } &&
    expect_65 "messages\\[0\\].role: a number where a string belongs"
'
test_expect 'cl-pairs --to-flat: a future that is not an object' '
    echo "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"candidates\":[{\"id\":\"c0\",\"content\":\"x\",\"futures\":[7]}]}" >in &&
    { cl-pairs -q -Z --to-flat in >out 2>err; rc=$?; } &&
    expect_65 "candidates\\[0\\].futures\\[0\\]: a number where an object belongs"
'
test_expect 'cl-pairs --from-flat: a session message that is not an object' '
    echo "{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"completion\":\"x\",\"conv_id\":1,\"score\":1,\"sessions\":[[3]]}" >in &&
    { cl-pairs -q -Z --from-flat in >out 2>err; rc=$?; } &&
    expect_65 "sessions\\[0\\]\\[0\\]: a number where an object belongs"
'
test_expect 'with --skip-bad the malformed record is counted, copied to --rejects, and the others go on' '
    { echo "{\"id\":\"a\",\"messages\":[5]}"; echo "{\"id\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"a b\"}]}"; } >in &&
    cl-reward -Z --metric tokens --tokens words --skip-bad --rejects rej.jsonl in >out 2>err &&
    jq -se "map(.id) == [\"b\"]" out && jq -e ".id == \"a\"" rej.jsonl &&
    grep -q "in:1: messages\\[0\\]: a number where an object belongs (skipped)" err
'
test_done
