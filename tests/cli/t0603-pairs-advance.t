#!/bin/sh
# cl-pairs --advance: from scored branches to the next turn's states, with the v2 (longest) and
# paper-era (worst-open) next-user rules, the turn cap and the termination marker.
. "$(dirname "$0")/lib.sh"
B="$FIXTURES/pairs/branches.jsonl"
pick() { jq -c "select($1)" "$2"; } # jq 1.6 -e judges the last input: select apart
# conv-a/t0's best candidate c1 has futures: 0 (3 messages, R 0.8, opens "yes please: 2+3"),
# 1 (2 messages, R 0.6, opens "2 and 3") and 2 (the user ends the chat at once, R 0.7).

test_expect 'the best reply and the first user message of its longest future are appended' '
    cl-pairs -q -Z --advance "$B" >out &&
    pick ".id == \"conv-a\" and .turn == 1" out | jq -e "
        ([.messages[].content] == [\"can you help with a sum\", \"Which sum? Tell me the numbers.\", \"yes please: 2+3\"])
        and .done == false and (has(\"candidates\") | not)
        and .picks == [{turn: 0, candidate: \"c1\", source: \"proact\", mr: {mean: 0.7, std: 0.08165, n: 3},
                        scores: {accuracy: (2/3), interactivity: ((0.9+0.7+0.8)/3)}, future: 0}]" >/dev/null
'
test_expect 'the appended reply keeps the usage its call reported, so later turns can count tokens' '
    pick ".id == \"conv-a\" and .turn == 0" "$B" |
        jq -c ".candidates[1].usage = {prompt_tokens: 40, completion_tokens: 7}" >in &&
    cl-pairs -q -Z --advance in >out &&
    jq -e ".messages[1] == {role: \"assistant\", content: \"Which sum? Tell me the numbers.\",
                            usage: {prompt_tokens: 40, completion_tokens: 7}}" out >/dev/null
'
test_expect 'worst-open takes the lowest-R future that does not end the chat' '
    cl-pairs -q -Z --advance --next-user worst-open "$B" >out &&
    pick ".id == \"conv-a\" and .turn == 1" out | jq -e ".messages[-1].content == \"2 and 3\" and .picks[-1].future == 1" >/dev/null
'
test_expect 'a next user message with the marker ends the conversation and is kept' '
    cl-pairs -q -Z --advance "$B" >out &&
    pick ".id == \"conv-a\" and .turn == 2" out | jq -e ".done and .done_reason == \"terminated\"
        and .messages[-2:] == [{role: \"assistant\", content: \"5.\"}, {role: \"user\", content: \"cool [[TERMINATE CHAT]]\"}]" >/dev/null
'
test_expect '--terminate-marker names another marker' '
    pick ".id == \"conv-a\" and .turn == 0" "$B" |
        jq -c ".candidates[1].futures[0].messages[0].content = \"fine <END>\"" >in &&
    cl-pairs -q -Z --advance --terminate-marker "<END>" in | jq -e ".done_reason == \"terminated\" and .turn == 1" >/dev/null &&
    cl-pairs -q -Z --advance in | jq -e ".done == false and .messages[-1].content == \"fine <END>\"" >/dev/null
'
test_expect 'the turn cap marks conversations done and adds no user message' '
    cl-pairs -q -Z --advance --max-turns 1 --stats st "$B" >out &&
    jq -s -e "map(select(.id != \"conv-d\")) | all(.done and .done_reason == \"max_turns\" and .messages[-1].role == \"assistant\")" out >/dev/null &&
    jq -e ".finished.max_turns == 4 and .already_done == 1 and .active == 0" st >/dev/null
'
test_expect 'finished states pass through byte for byte' '
    sed -n 5p "$B" >done && cl-pairs -q -Z --advance done | cmp - done
'
test_expect 'states come out in input order, one per input record' '
    cl-pairs -q -Z --advance "$B" | jq -r .id | tr "\n" " " >ids &&
    test "$(cat ids)" = "conv-a conv-a conv-b conv-c conv-d "
'
test_expect 'a branch without scores is reported and the others advance' '
    { head -1 "$B" | jq -c "del(.candidates[].mr)"; sed -n 3p "$B"; } >in &&
    { cl-pairs -Z --advance in >out 2>err; test $? = 1; } && grep -q "in:1: candidates\[0\].mr" err &&
    pick ".id == \"conv-b\"" out | jq -e ".turn == 1 and .error == null" >/dev/null &&
    pick ".id == \"conv-a\"" out | jq -e ".error.tool == \"cl-pairs\"" >/dev/null
'
test_expect 'an unknown --next-user rule is a usage error' '
    { cl-pairs --advance --next-user best </dev/null 2>err; test $? = 2; } && grep -q "longest or worst-open" err &&
    { cl-pairs --next-user longest </dev/null 2>err; test $? = 2; } && grep -q "needs --advance" err
'
test_done
