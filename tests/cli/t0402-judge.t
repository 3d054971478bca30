#!/bin/sh
# cl-judge: each judge's request and the reading of its reply, against a scripted mock judge
# over loopback HTTP.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/mockjudge.sh"
F="$FIXTURES/judge"

test_expect 'interactivity (unit scale): one user message with the transcript, system prompt left out, reply scored as given' '
    echo "{\"match\": \"any number from 0 to 1\", \"reply\": \"Here you go: {\\\"thought\\\": \\\"ok\\\", \\\"interactivity\\\": 0.5}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity "$F/full.jsonl" >out &&
    test "$(requests | wc -l)" = 1 &&
    requests | jq -e "(.messages | length) == 1 and .messages[0].role == \"user\" and .model == \"judge-model\" and .temperature == 0 and .max_tokens == 2048" &&
    requests | jq -e ".messages[0].content | contains(\"**User**: USER-MARK\") and contains(\"**Assistant**: ASSIST-MARK\") and (contains(\"SYS-MARK\") | not) and contains(\"0.5 = partly interactive\")" &&
    jq -e ".scores.interactivity == 0.5 and .judge.interactivity == {n: 1, failed: 0, raw: [0.5], scale: \"unit\", mean: 0.5, sd: 0, min: 0.5, max: 0.5}" out &&
    jq -e ".keep == {me: [1, 2, 3]} and .turn == 2 and .judge_usage.calls == 1" out
'

test_expect 'interactivity, paper scales: 1-3 anchors; training S/3 on the window, evaluation 2(S-2.5) on the whole' '
    echo "{\"match\": \"any number from 1 to 3\", \"reply\": \"{\\\"thought\\\": \\\"ok\\\", \\\"interactivity\\\": 3}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity --itr-scale paper "$F/full.jsonl" >out &&
    requests | jq -e ".messages[0].content | contains(\"3 = highly interactive\") and contains(\"1 = barely interactive\")" &&
    jq -e ".scores.interactivity == 1 and .judge.interactivity.raw == [3] and .judge.interactivity.scale == \"paper-train\"" out &&
    echo "{\"match\": \"any number from 1 to 3\", \"reply\": \"{\\\"interactivity\\\": \\\"2\\\"}\"}" >s2.jsonl &&
    mock_stop && start_mock --script s2.jsonl &&
    cl-judge $J -Z --interactivity --itr-scale paper "$F/full.jsonl" >out2 &&
    jq -e ".scores.interactivity == (2 / 3) and .judge.interactivity.raw == [2] and .judge.interactivity.scale == \"paper-train\"" out2 &&
    cl-judge $J -Z --interactivity --itr-scale paper --context full "$F/full.jsonl" >out3 &&
    jq -e ".scores.interactivity == -1 and .judge.interactivity.scale == \"paper-eval\"" out3 &&
    cl-judge $J -Z --interactivity --context full --itr-scale paper-train "$F/full.jsonl" >out4 &&
    jq -e ".scores.interactivity == (2 / 3)" out4 &&
    cl-judge $J -Z --interactivity --itr-scale paper-eval "$F/full.jsonl" >out5 &&
    jq -e ".scores.interactivity == -1" out5 &&
    { cl-judge $J -Z --interactivity --itr-scale paper-ish "$F/full.jsonl" 2>err; test $? = 2; } && grep -q "paper-train or paper-eval" err
'

test_expect 'the paper reward refuses interactivity on the evaluation scale (it trains on S/3)' '
    echo "{\"match\": \"any number from 1 to 3\", \"reply\": \"{\\\"interactivity\\\": 2}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    cl-judge $J -Z --interactivity --itr-scale paper-eval "$F/full.jsonl" | jq -c ".task = \"math\" | .scores.accuracy = 1" >eval.jsonl &&
    jq -e ".judge.interactivity.scale == \"paper-eval\"" eval.jsonl &&
    { cl-reward -Z --reward paper --tokens words eval.jsonl >out 2>err; test $? = 1; } && grep -q "paper-eval scale" err &&
    cl-judge $J -Z --interactivity --itr-scale paper-train "$F/full.jsonl" | jq -c ".task = \"math\" | .scores.accuracy = 1" >train.jsonl &&
    cl-reward -q -Z --reward paper --tokens words train.jsonl | jq -e ".scores.interactivity == (2 / 3) and .R > 1"
'

test_expect 'a judgement outside its scale is not used: asked again, then reported, never scored 0' '
    echo "{\"match\": \"any number from 0 to 1\", \"reply\": \"{\\\"interactivity\\\": 7}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { cl-judge $J -Z --interactivity --judge-retries 2 "$F/full.jsonl" >out 2>err; test $? = 1; } &&
    test "$(requests | wc -l)" = 3 && grep -q "full.jsonl:1: full: interactivity: no readable judgement: .*outside 0..1" err &&
    jq -e "(.scores.interactivity == null) and .judge.interactivity.n == 0 and .judge.interactivity.failed == 1 and (.error.message | test(\"outside\"))" out
'

test_expect 'an unreadable reply is asked again with a new seed and the readable answer is used' '
    printf "%s\n" "{\"match\": \"\\\"seed\\\":1000\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" \
        "{\"match\": \"any number from 0 to 1\", \"reply\": \"I think it was quite interactive.\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity --stats st.json "$F/full.jsonl" >out &&
    test "$(requests | wc -l)" = 2 && requests | sed -n 1p | jq -e "has(\"seed\") | not" &&
    requests | sed -n 2p | jq -e ".seed == 1000" &&
    jq -e ".scores.interactivity == 1 and .judge.interactivity.failed == 0" out &&
    jq -e ".judge.retries == 1 and .judge.interactivity.judged == 1" st.json
'

test_expect '--judge-samples 3 sends three seeded requests and records mean, spread and the judgements in sample order' '
    printf "%s\n" "{\"match\": \"\\\"seed\\\":10}\", \"reply\": \"{\\\"interactivity\\\": 0.5}\"}" \
        "{\"match\": \"\\\"seed\\\":11\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" \
        "{\"match\": \"\\\"seed\\\":12\", \"reply\": \"{\\\"interactivity\\\": 0}\"}" >s.jsonl &&
    start_mock --script s.jsonl --latency 1-30 &&
    cl-judge $J -Z --seed 10 --interactivity --judge-samples 3 --stats st.json "$F/full.jsonl" >out &&
    test "$(requests | jq -s "map(.seed) | sort")" = "$(jq -n "[10, 11, 12]")" &&
    jq -e ".scores.interactivity == 0.5 and .judge.interactivity.raw == [0.5, 1, 0] and .judge.interactivity.sd == 0.5 and .judge.interactivity.min == 0 and .judge.interactivity.max == 1 and .judge.interactivity.n == 3" out &&
    jq -e ".judge.interactivity.mean_sd == 0.5" st.json
'

test_expect 'one failed sample of three: the mean of the other two, the failure counted, the record not failed' '
    printf "%s\n" "{\"match\": \"\\\"seed\\\":0}\", \"reply\": \"{\\\"interactivity\\\": 0.5}\"}" \
        "{\"match\": \"\\\"seed\\\":1}\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" \
        "{\"match\": \"any number\", \"reply\": \"no idea\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity --judge-samples 3 --judge-retries 0 "$F/full.jsonl" >out &&
    jq -e ".scores.interactivity == 0.75 and .judge.interactivity.n == 2 and .judge.interactivity.failed == 1 and (has(\"error\") | not)" out
'

test_expect '--context window judges each future with the earlier history as context; scores go on the future' '
    echo "{\"match\": \"any number from 0 to 1\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity "$F/branch.jsonl" >out &&
    test "$(requests | wc -l)" = 3 &&
    requests | jq -r ".messages[0].content" >prompts &&
    request_with FUT00-MARK | jq -e ".messages[0].content | split(\"<conversation>\") | (.[0] | contains(\"**User**: HIST-MARK\")) and (.[1] | contains(\"HIST-MARK\") | not) and (.[1] | contains(\"**Assistant**: CAND0-MARK\"))" &&
    jq -e "[.candidates[].futures[].scores.interactivity] == [1, 1, 1] and (has(\"scores\") | not)" out &&
    jq -e ".candidates[1].futures[0].judge.interactivity.n == 1 and .candidates[0].futures[1].terminated == true" out
'

test_expect '--context full judges the whole conversation with no separate history' '
    echo "{\"match\": \"any number from 0 to 1\", \"reply\": \"{\\\"interactivity\\\": 0}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --interactivity --context full "$F/branch.jsonl" >out &&
    request_with FUT10-MARK | jq -e ".messages[0].content | split(\"<conversation>\") | (.[0] | contains(\"HIST-MARK\") | not) and (.[0] | contains(\"(none: the conversation starts here)\")) and (.[1] | contains(\"HIST-MARK\")) and (.[1] | contains(\"CAND1-MARK\"))" &&
    jq -e "[.candidates[].futures[].scores.interactivity] == [0, 0, 0]" out
'

test_expect 'extraction: the whole conversation and the seed requirement are sent; extracted.document goes on each future' '
    start_mock --script "$F/extract-document.script.jsonl" && cl-judge $J -Z --extract document "$F/branch.jsonl" >out &&
    test "$(requests | wc -l)" = 3 &&
    request_with FUT01-MARK | jq -e ".messages[0].content | contains(\"HIST-MARK\") and contains(\"CAND0-MARK\") and contains(\"Requirement for this item (or \\\"none\\\"): REQ-MARK keep the title line\")" &&
    jq -e "[.candidates[].futures[].extracted.document] == [\"Rain\non the roof\", \"Rain\non the roof\", \"Rain\non the roof\"] and (has(\"extracted\") | not)" out
'

test_expect 'code extraction asks for imports and no test harness; a full conversation gets a top-level extracted.code beside earlier kinds' '
    echo "{\"match\": \"wrote a program together\", \"reply\": \"{\\\"final_completion\\\": \\\"import os\\\"}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    records "$F/full.jsonl" | jq -c ".extracted = {document: \"earlier\"}" >in.jsonl && cl-judge $J -Z --extract code in.jsonl >out &&
    requests | jq -e ".messages[0].content | contains(\"Keep every import\") and contains(\"__main__\") and contains(\"(or \\\"none\\\"): none\")" &&
    jq -e ".extracted == {document: \"earlier\", code: \"import os\"}" out
'

test_expect 'accuracy reads the extracted answer with the question and the reference; true counts as 1' '
    printf "%s\n" "{\"match\": \"State the final answer\", \"reply\": \"{\\\"final_completion\\\": 42}\"}" \
        "{\"match\": \"<response>\\\\n42\\\\n</response>\", \"reply\": \"{\\\"thought\\\": \\\"same\\\", \\\"accuracy\\\": true}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --extract answer --accuracy "$F/full.jsonl" >out &&
    test "$(requests | wc -l)" = 2 &&
    requests | sed -n 2p | jq -e ".messages[0].content | contains(\"Q-MARK What is 6 times 7?\") and contains(\"\\\\boxed{42}\") and (contains(\"USER-MARK\") | not)" &&
    jq -e ".extracted.answer == \"42\" and .scores.accuracy == 1" out
'

test_expect 'when the answer cannot be extracted, accuracy is not judged on something else: the record fails' '
    echo "{\"match\": \"State the final answer\", \"reply\": \"I cannot tell\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { cl-judge $J -Z --extract answer --accuracy --judge-retries 1 "$F/full.jsonl" >out 2>err; test $? = 1; } &&
    test "$(requests | wc -l)" = 2 && ! requests | grep -q "final answer to a question is correct" &&
    jq -e "(.extracted == null) and (.scores == null) and (.error.message | test(\"extraction failed\"))" out &&
    jq -e ".judge.accuracy | .n == 0 and .failed == 1" out
'

test_expect 'accuracy without extraction reads the transcript; a verdict that is not 0 or 1 is not used' '
    echo "{\"match\": \"final answer to a question is correct\", \"reply\": \"{\\\"accuracy\\\": 0.7}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { cl-judge $J -Z --accuracy --judge-retries 0 "$F/full.jsonl" >out 2>err; test $? = 1; } &&
    requests | jq -e ".messages[0].content | contains(\"**Assistant**: ASSIST-MARK\")" &&
    grep -q "not 0 or 1" err && jq -e ".scores.accuracy == null" out
'

test_expect 'helpfulness: six levels, scored as given' '
    echo "{\"match\": \"how helpful an AI assistant was\", \"reply\": \"{\\\"helpfulness\\\": 0.8}\"}" >s.jsonl &&
    start_mock --script s.jsonl && cl-judge $J -Z --helpfulness "$F/full.jsonl" >out &&
    requests | jq -e ".messages[0].content | contains(\"0.8 = very helpful\")" &&
    jq -e ".scores.helpfulness == 0.8" out
'

test_expect 'clarify-or-answer: 1 when it asks on an ambiguous item, 0 when it asks on a clear one; no label fails the record' '
    echo "{\"match\": \"did it ask the user to clarify\", \"reply\": \"{\\\"asks_clarification\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { cl-judge $J -Z --clarify "$F/abg.jsonl" >out 2>err; test $? = 1; } &&
    test "$(requests | wc -l)" = 2 &&
    request_with AMB-MARK | jq -e ".messages[0].content | contains(\"<reply>\\nDo you mean Tom or Jim?\\n</reply>\")" &&
    jq -s -e ".[0].scores.clarify_or_answer == 1 and .[0].judge.clarify_or_answer.raw == [1] and .[1].scores.clarify_or_answer == 0" out &&
    jq -s -e ".[2].error.message | test(\"ambiguity\")" out && grep -q "abg.jsonl:3:" err
'

test_expect 'a judge that stays unavailable after the client retries fails the record, which is still written (exit 69)' '
    start_mock --fault 500=1 &&
    { cl-judge $J -Z --interactivity "$F/full.jsonl" >out 2>err; test $? = 69; } &&
    jq -e "(.scores.interactivity == null) and (.error.message | test(\"HTTP 500\")) and .id == \"m1\"" out
'

test_expect 'a judge that refuses the key exits 78 and every record is still written with its error' '
    start_mock --fault 401=1 &&
    { cl-judge $J -Z --interactivity "$F/full.jsonl" "$F/full.jsonl" >out 2>err; test $? = 78; } &&
    jq -s -e "length == 2 and all(.[]; .error.message | test(\"HTTP 401\"))" out
'

test_expect 'a record with nothing to judge is reported with the field, and the others are judged' '
    echo "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { echo "{\"id\":\"x\"}"; records "$F/full.jsonl"; } >in.jsonl &&
    { cl-judge $J -Z --interactivity in.jsonl >out 2>err; test $? = 1; } &&
    grep -q "in.jsonl:1: .*messages" err && jq -s -e "length == 2 and .[1].scores.interactivity == 1 and .[0].id == \"x\"" out
'

test_expect 'messages that are not an array of messages are malformed input (65, the line and the field); --skip-bad judges the others' '
    echo "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl &&
    { echo "{\"id\":\"x\",\"messages\":\"oops\"}"; records "$F/full.jsonl"; } >in.jsonl &&
    { cl-judge $J -Z --interactivity in.jsonl >out 2>err; test $? = 65; } &&
    grep -q "in.jsonl:1: messages: a string where an array belongs" err && ! test -s out &&
    cl-judge $J -Z --interactivity --skip-bad in.jsonl >out 2>err &&
    jq -s -e "length == 1 and .[0].scores.interactivity == 1" out && grep -q "1 malformed skipped" err
'

test_expect 'malformed input stops reading with exit 65 and the line, after the records before it are judged and written' '
    echo "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl --latency 50 &&
    { records "$F/full.jsonl"; echo "{not json"; records "$F/full.jsonl"; } >in.jsonl &&
    { cl-judge $J -Z --interactivity in.jsonl >out 2>err; test $? = 65; } &&
    grep -q "in.jsonl:2:" err && jq -s -e "length == 1 and .[0].scores.interactivity == 1" out
'

test_expect 'output keeps input order while replies arrive out of order' '
    echo "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl --latency 1-40 &&
    for i in $(seq 1 40); do records "$F/full.jsonl" | jq -c ".id = \"r$i\" | .messages[1].content += \" $i\""; done >in.jsonl &&
    cl-judge $J -Z --interactivity in.jsonl >out &&
    test "$(jq -r .id out | tr "\n" " ")" = "$(seq -f "r%g" 1 40 | tr "\n" " ")"
'

test_expect 'scores and judgements are written in judge order whatever order the replies arrive in' '
    printf "%s\n" "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" \
        "{\"match\": \"\", \"reply\": \"{\\\"helpful\\\": 1, \\\"helpfulness\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl --latency 1-60 &&
    for i in $(seq 1 30); do records "$F/full.jsonl" | jq -c ".id = \"r$i\""; done >in.jsonl &&
    cl-judge $J -Z --helpfulness --interactivity in.jsonl >out &&
    test "$(jq -c "[(.scores | keys_unsorted), (.judge | keys_unsorted)]" out | sort -u | wc -l)" = 1
'
test_expect 'with a cache, a second run replays every judgement without a request and gives the same bytes' '
    echo "{\"match\": \"any number\", \"reply\": \"{\\\"interactivity\\\": 0.5}\"}" >s.jsonl &&
    start_mock --script s.jsonl && JC=$(echo "$J" | sed "s/--no-cache/--cache cache/") &&
    cl-judge $JC -Z --interactivity --judge-samples 2 "$F/branch.jsonl" >a && n1=$(requests | wc -l) &&
    cl-judge $JC -Z --interactivity --judge-samples 2 "$F/branch.jsonl" >b &&
    test "$n1" = 6 && test "$(requests | wc -l)" = 6 && cmp a b
'

test_expect '--prompt-dir replaces a built-in judge prompt; an unknown placeholder is a configuration error (78)' '
    echo "{\"match\": \"MY-OWN-PROMPT\", \"reply\": \"{\\\"interactivity\\\": 1}\"}" >s.jsonl &&
    start_mock --script s.jsonl && mkdir p &&
    printf "MY-OWN-PROMPT {{conversation}} / {{history}}\n" >p/judge_interactivity_unit.txt &&
    cl-judge $J -Z --interactivity --prompt-dir p "$F/full.jsonl" >out && jq -e ".scores.interactivity == 1" out &&
    printf "{{nosuchvar}}\n" >p/judge_interactivity_unit.txt &&
    { cl-judge $J -Z --interactivity --prompt-dir p "$F/full.jsonl" >out 2>err; test $? = 78; } &&
    grep -q "prompt judge_interactivity_unit: .*nosuchvar" err && test "$(requests | wc -l)" = 1
'

test_expect 'without a judge model cl-judge exits 78 before reading any input' '
    { cl-judge --interactivity "$F/full.jsonl" >out 2>err; test $? = 78; } && grep -q "give --judge" err && ! test -s out
'

test_expect 'usage errors exit 2: no judge, an unknown artefact, scale or context' '
    { cl-judge --judge openai:x "$F/full.jsonl" 2>e1; test $? = 2; } && grep -q "choose judges" e1 &&
    { cl-judge --judge openai:x --extract poem "$F/full.jsonl" 2>e2; test $? = 2; } && grep -q "poem" e2 &&
    { cl-judge --judge openai:x --interactivity --itr-scale ten "$F/full.jsonl" 2>e3; test $? = 2; } &&
    { cl-judge --judge openai:x --interactivity --context some "$F/full.jsonl" 2>e4; test $? = 2; }
'
test_done
