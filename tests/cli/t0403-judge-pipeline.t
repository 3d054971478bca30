#!/bin/sh
# cl-judge on what cl-rollout really writes: branch records and full conversations, then the
# report, all against one loopback mock serving the user, the assistant and the judge.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"
. "$(dirname "$0")/mockjudge.sh"

judge_rules() {
    rule 'any number from 0 to 1' '{"thought": "asked about the topic", "interactivity": 1}'
    rule 'wrote a document together' '{"thought": "last draft", "final_completion": "DONE"}'
}

test_expect 'every future of cl-rollout --branch output is judged, with the candidate and the future as the window' '
    { judge_rules; endless_script; } >script && start_mock --script script && seeds 2 >in &&
    cl-rollout --branch $ROLL -k 2 --samples 2 --window 1 --assistant-mode vanilla --api-base "$MOCK_URL" in >branches &&
    n0=$(mock_count) &&
    cl-judge $J -Z --interactivity --extract document branches >judged &&
    test "$(($(mock_count) - n0))" = 16 &&
    jq -s -e "length == 2 and all(.[]; [.candidates[].futures[].scores.interactivity] == [1, 1, 1, 1])" judged &&
    jq -s -e "all(.[]; [.candidates[].futures[].extracted.document] | unique == [\"DONE\"])" judged &&
    jq -s -e "all(.[]; .candidates | all(.[]; has(\"content\") and has(\"mode\")))" judged &&
    tail -n 16 "$MOCK_LOG" | jq -c .body | jq -c --arg m "any number from 0 to 1" "select(.messages[0].content | contains(\$m))" >itr &&
    test "$(wc -l <itr)" = 8 &&
    jq -s -e "all(.[]; .messages[0].content | split(\"<conversation>\")[1] | startswith(\"\n**Assistant**: mock reply\"))" itr &&
    jq -s -e "all(.[]; .messages[0].content | split(\"<conversation>\")[0] | contains(\"**User**: help me write a poem\"))" itr
'

test_expect 'cl-rollout --full conversations are judged whole and the report reads them' '
    { judge_rules; standard_script; } >script && start_mock --script script && seeds 3 >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" in >convs &&
    cl-judge $J -Z --interactivity --context full convs >judged &&
    jq -s -e "length == 3 and all(.[]; .scores.interactivity == 1 and .judge.interactivity.scale == \"unit\")" judged &&
    jq -s -e "all(.[]; .messages | length > 2)" judged &&
    cl-judge --report -q --format json --metric interactivity judged >rep.json &&
    jq -e ".tasks[0].task == \"document\" and .tasks[0].runs[0].records == 3 and .tasks[0].runs[0].measures.itr.mean == 100" rep.json
'
test_done
