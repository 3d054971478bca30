#!/bin/sh
# cl-pairs --to-flat / --from-flat: the flat rows of the published collabllm-multiturn-*
# datasets (prompt, completion, conv_id, turn_id, score, sessions, rewards, single_turn_*).
# tests/fixtures/pairs/flat-rows.jsonl is written by hand in that shape: numeric conv_ids, two
# candidates per turn, sessions holding the whole conversation.
. "$(dirname "$0")/lib.sh"
B="$FIXTURES/pairs/branches.jsonl"
F="$FIXTURES/pairs/flat-rows.jsonl"

test_expect 'branch records -> rows -> branch records gives the same records' '
    cl-pairs -q -Z --to-flat "$B" >rows && cl-pairs -q -Z --from-flat rows >back &&
    jq -S -c . back >got && grep -v "\"done\": true" "$B" | jq -S -c . >want && cmp got want
'
test_expect 'published rows -> branch records -> rows gives the same rows' '
    cl-pairs -q -Z --from-flat "$F" >branches && cl-pairs -q -Z --to-flat branches >rows &&
    jq -S -c . rows >got && jq -S -c . "$F" >want && cmp got want
'
test_expect 'a row has one candidate: completion, score = MR mean, sessions = whole conversations, rewards per session' '
    cl-pairs -q -Z --to-flat "$B" | head -1 | jq -e "
        .conv_id == \"conv-a\" and .turn_id == 1 and .completion == \"It is 5.\" and .score == 0.4
        and (.sessions | length) == 3 and .sessions[1][1] == {role: \"assistant\", content: \"It is 5.\"}
        and .sessions[1][2:] == [{role: \"user\", content: \"and 2+4?\"}, {role: \"assistant\", content: \"6\"}]
        and .rewards == {accuracy: [1,1,1], interactivity: [0.2,0.1,0.3], MR: [0.4,0.3,0.5]}
        and .single_turn_prompt == \"What is 2+3? Give the number.\" and .single_turn_metadata == {answer: \"5\"}" >/dev/null
'
test_expect 'published rows group into one branch per (conv_id, turn_id) with futures after the reply' '
    cl-pairs -q -Z --from-flat "$F" >b &&
    test "$(jq -c "[.id, .conv_id, (.candidates | length)]" b | tr "\n" " ")" = "[\"0\",0,2] [\"0\",0,2] [\"1\",1,2] " &&
    head -1 b | jq -e ".candidates[0].futures[1] == {messages: [{role: \"user\", content: \"x plus one is three\"},
        {role: \"assistant\", content: \"x=2\"}, {role: \"user\", content: \"thanks [[TERMINATE CHAT]]\"}],
        scores: {accuracy: 1, token_amount: 0.1}, R: 0.95}" >/dev/null
'
test_expect 'DPO on the published rows follows the official converter (max vs min score, gap 0.02)' '
    cl-pairs -q -Z --from-flat "$F" | cl-pairs -q -Z --dpo >pairs &&
    test "$(jq -c "[.conv_id, .turn, .chosen[0].content, .rejected[0].content, .score_chosen, .score_rejected]" pairs | tr "\n" " ")" = \
         "[\"0\",0,\"Sure, which equation?\",\"x = 2.\",0.925,0.15] [\"1\",0,\"What is the question?\",\"42\",0.6,-0.2] "
'
test_expect 'the published rows advance like our own branches' '
    cl-pairs -q -Z --from-flat "$F" | cl-pairs -q -Z --advance >s &&
    head -1 s | jq -e ".turn == 1 and .messages[-1].content == \"x plus one is three\" and .picks[0].future == 1" >/dev/null
'
test_expect 'a row missing its score is reported with file, line and field' '
    head -2 "$F" | sed "2s/\"score\": [0-9.]*, //" >in &&
    { cl-pairs -Z --from-flat in >out 2>err; test $? = 1; } && grep -q "in:2: score: missing" err
'
test_expect 'a branch that cannot become rows is reported on stderr and in --rejects, never among the rows' '
    { head -1 "$B" | jq -c "del(.candidates[0].mr)"; sed -n 2p "$B"; } >in &&
    { cl-pairs -Z --to-flat --rejects rej in >out 2>err; test $? = 1; } &&
    grep -q "in:1: candidates\[0\].mr: missing" err && ! grep -q "\"error\"" out &&
    test "$(sed -n 2p "$B" | cl-pairs -q -Z --to-flat | wc -l)" = "$(wc -l <out)" &&
    jq -e ".error.tool == \"cl-pairs\"" rej >/dev/null && grep -q "1 failed (in the rejects file)" err
'
test_done
