#!/bin/sh
# --metric rm_score --rm SPEC: a reward model served over HTTP scores each unit's whole
# conversation (the mock server over loopback stands in for it), through cl-judge --rm-units.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
F="$FIXTURES/reward"

# The mock answers a request holding MATCH with REPLY.
rule() { jq -cn --arg m "$1" --arg r "$2" '{match: $m, reply: $r}'; }

test_expect 'each future is scored on history, candidate and future; the reply is the score' '
    jq -c ".candidates[].futures[].messages[-1].content" "$F/branch-document.jsonl" >lasts &&
    : >script && n=0 && while read -r c; do n=$((n + 1)); rule "$(echo "$c" | jq -r .)" " -1.$n
" >>script; done <lasts &&
    mock_start --script script &&
    cl-reward -q -Z --metric rm_score --rm openai:rm --rm-api-base "$MOCK_URL" --weights rm_score=1 \
        "$F/branch-document.jsonl" >out &&
    test "$(mock_count)" = 3 &&
    jq -c "[.candidates[].futures[].scores.rm_score]" out >got && test "$(cat got)" = "[-1.1,-1.2,-1.3]" &&
    jq -e "[.candidates[].futures[] | .R == .scores.rm_score] | all" out &&
    jq -s -e "all(.[]; .body.temperature == 0 and .body.model == \"rm\" and
        ([.body.messages[] | keys] | all(. == [\"content\", \"role\"])))" mock.log &&
    hist=$(jq ".messages | length" "$F/branch-document.jsonl") &&
    jq -s -e --argjson h "$hist" --slurpfile r "$F/branch-document.jsonl" "
        [.[].body.messages] as \$sent |
        [\$r[0].candidates[] as \$c | \$c.futures[] | (\$r[0].messages + [{role: \"assistant\", content: \$c.content}] + .messages) | map({role, content})] as \$want |
        (\$sent | sort) == (\$want | sort) and all(\$sent[]; length > \$h)" mock.log
'
test_expect 'a conversation is scored whole, and the key comes from CL_RM_API_KEY' '
    rule "capital" "0.75" >script &&
    mock_start --script script &&
    printf "%s\n" "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"capital of France?\"},{\"role\":\"assistant\",\"content\":\"Paris\"}]}" >in &&
    CL_RM_API_KEY=sk-rm-test cl-reward -q -Z --metric rm_score --rm openai:rm --rm-api-base "$MOCK_URL" in >out &&
    test "$(jq .scores.rm_score out)" = 0.75 &&
    jq -e ".headers.authorization == \"Bearer sk-rm-test\" and (.body.messages | length) == 2" mock.log &&
    ! grep -q sk-rm-test out
'
test_expect 'a reply that is not a number fails its record (exit 1) and is never taken as zero' '
    rule "capital" "a fine answer" >script &&
    mock_start --script script &&
    printf "%s\n" "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"capital?\"}]}" >in &&
    { cl-reward -Z --metric rm_score --rm openai:rm --rm-api-base "$MOCK_URL" in >out 2>err; test $? = 1; } &&
    grep -q "in:1: conversation: rm_score: the reward model.s reply is not a number: a fine answer" err &&
    jq -e ".error and (.scores.rm_score == null)" out
'
test_expect 'an unreachable reward model fails the records and exits 69' '
    printf "%s\n" "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}" >in &&
    { cl-reward -Z --metric rm_score --rm openai:rm --rm-api-base http://127.0.0.1:9/v1 --rm-retries 1 in >out 2>err; test $? = 69; } &&
    grep -q "rm_score" err && jq -e ".error" out
'
test_expect 'rm_score runs beside a cmd: metric; cl-judge --rm-units is itself a cmd: program' '
    rule "capital" "2.5" >script &&
    mock_start --script script &&
    printf "%s\n" "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"capital?\"}]}" >in &&
    cl-reward -q -Z --metric "rm_score,cmd:sed -u s/.*/{\\\"other\\\":1}/" --rm openai:rm --rm-api-base "$MOCK_URL" in >out &&
    jq -e ".scores == {rm_score: 2.5, other: 1}" out &&
    cl-reward -q -Z --metric "cmd:cl-judge -q --rm-units --no-cache --judge openai:rm --judge-api-base $MOCK_URL" in >out2 &&
    jq -e ".scores == {rm_score: 2.5}" out2
'
test_expect 'rm_score without --rm, or --rm without rm_score, is a usage error' '
    { cl-reward --metric rm_score </dev/null 2>err; test $? = 2; } && grep -q "needs the reward model: --rm SPEC" err &&
    { cl-reward --metric bleu --rm openai:x </dev/null 2>err; test $? = 2; } && grep -q "belong to --metric rm_score" err &&
    { cl-reward --metric bleu --rm-retries 2 </dev/null 2>err; test $? = 2; } && grep -q "belong to --metric rm_score" err
'
test_done
