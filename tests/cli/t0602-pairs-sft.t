#!/bin/sh
# cl-pairs --sft: the chosen chain of each conversation, and metric floors.
. "$(dirname "$0")/lib.sh"
B="$FIXTURES/pairs/branches.jsonl"
pick() { jq -c "select($1)" "$2"; } # jq 1.6 -e judges the last input: select apart

test_expect 'each conversation gives its latest chosen chain, ending on the assistant' '
    cl-pairs -q -Z --sft "$B" >out &&
    test "$(jq -r .id out | tr "\n" " ")" = "conv-a conv-b conv-c conv-d " &&
    pick ".id == \"conv-a\"" out | jq -e "[.messages[].content] == [\"can you help with a sum\",
           \"Which sum? Tell me the numbers.\", \"yes please: 2+3\", \"5.\"]" >/dev/null &&
    jq -s -e "all(.messages[-1].role == \"assistant\")" out >/dev/null
'
test_expect 'advancing every turn and taking the finished states gives the same dialogues' '
    cl-pairs -q -Z --advance --max-turns 2 "$B" | cl-pairs -q -Z --sft --where ".done" >a &&
    jq -c "select(.id == \"conv-a\")" a >a1 &&
    cl-pairs -q -Z --sft "$B" | jq -c "select(.id == \"conv-a\")" | cmp - a1
'
test_expect '--min keeps conversations whose chosen reply meets the floor' '
    cl-pairs -q -Z --sft --min "accuracy>=0.5" --stats st "$B" >out &&
    test "$(jq -r .id out | tr "\n" " ")" = "conv-a conv-c conv-d " &&
    test "$(jq -c "[.conversations, .dialogues, .below_min]" st)" = "[4,3,1]"
'
test_expect 'several floors must all hold' '
    test "$(cl-pairs -q -Z --sft --min "accuracy>=0.5" --min "interactivity>0.8" "$B" | jq -r .id | tr "\n" " ")" = "conv-c "
'
test_expect 'a floor on a metric the record lacks is an error for that record, reported, never written among the dialogues' '
    { cl-pairs -Z --sft --min "bleu>=0.1" --rejects rej "$B" >out 2>err; test $? = 1; } &&
    grep -q "no score .bleu." err && ! test -s out &&
    test "$(jq -r "select(.error) | .id" rej | sort -u | tr "\n" " ")" = "conv-a conv-b conv-c conv-d "
'
test_expect 'unfinished states are counted, not turned into dialogues' '
    printf "{\"id\":\"u\",\"done\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n" >in &&
    cl-pairs -q -Z --sft --stats st in >out && ! test -s out && jq -e ".unfinished_states == 1" st >/dev/null
'
test_expect '--system-prompt opens every dialogue with the system prompt' '
    cl-pairs -q -Z --sft --system-prompt "$B" | jq -s -e "length == 4 and all(.messages[0].role == \"system\")" >/dev/null
'
test_expect 'a malformed floor is a usage error' '
    { cl-pairs --sft --min accuracy </dev/null 2>err; test $? = 2; } && grep -q "METRIC>=X" err &&
    { cl-pairs --min "a>=1" </dev/null 2>err; test $? = 2; } && grep -q "needs --sft" err
'
test_done
