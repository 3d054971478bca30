#!/bin/sh
# cl-reward: pass-through, levels, the extracted-artefact contract, errors and order.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"

test_expect 'without a metric or reward, records pass through byte for byte' '
    cl-reward -q -Z "$F/branch-document.jsonl" >out && cmp out "$F/branch-document.jsonl"
'
test_expect 'scores go on each future, R on each future, mr on each candidate; unknown fields stay' '
    cl-reward -q -Z --weights "interactivity=1,tokens=-0.01" --metric tokens --tokens usage "$F/branch-document.jsonl" >out &&
    jq -e ".unknown_field.kept == [1,2,3] and .candidates[0].id == \"c0\"" out &&
    jq -e "[.candidates[].futures[].scores.tokens] == [28, 21, 14]" out &&
    jq -e "[.candidates[].futures[].R] | map(. * 1e9 | round) == [720000000, 290000000, -140000000]" out &&
    jq -e ".candidates[0].mr | .n == 2 and (.mean - 0.505 | fabs) < 1e-12 and (.std - 0.215 | fabs) < 1e-12" out &&
    jq -e ".candidates[1].mr | .n == 1 and (.mean + 0.14 | fabs) < 1e-12 and .std == 0" out &&
    jq -e ".candidates[0].mr.metrics | .interactivity == 0.75 and .tokens == 24.5" out &&
    jq -e ".candidates[0].futures[0].metric_info.tokens | .method == \"usage\" and .assistant == 23 and .user == 5" out
'
test_expect 'a whole conversation (no candidates) is scored at the record level' '
    cl-reward -q -Z --metric math,tokens --tokens words "$F/full-math.jsonl" >out &&
    jq -s -e ".[0] | .id == \"m-1\" and .scores.tokens == 17 and .scores.math_equiv == 1 and .scores.accuracy == 1" out
'
test_expect 'the extracted artefact is read from extracted.document of each future' '
    cl-reward -q -Z --metric bleu "$F/branch-document.jsonl" >out &&
    jq -e ".candidates[0].futures[0].scores.bleu == 1" out &&
    jq -e ".candidates[0].futures[1].scores.bleu < 0.5" out
'
test_expect 'bleu-word is sacreBLEU sentence BLEU / 100 (13a, effective order; worked by hand)' '
    printf "{\"completion\":\"The cat sat down.\",\"messages\":[],\"extracted\":{\"document\":\"The cat sat.\"}}\n" >in &&
    cl-reward -q -Z --metric bleu-word in >out &&
    # tokens "The cat sat ." against "The cat sat down .": 4/4, 2/3, 1/2, 0/1 → 100/(2·1) = 50;
    # BP = exp(1 - 5/4)
    jq -e "(.scores.bleu_word - (((1 - 5 / 4) | exp) * (([100, 200 / 3, 50, 50] | map(log) | add) / 4 | exp) / 100) | fabs) < 1e-12" out
'
test_expect 'a future without extracted.document is an error naming it, exit 1, record kept' '
    jq -c "del(.candidates[0].futures[1].extracted)" "$F/branch-document.jsonl" >in &&
    { cl-reward -Z --metric bleu in >out 2>err; test $? = 1; } &&
    grep -q "in:1: candidates\[0\].futures\[1\]: bleu: extracted.document is missing" err &&
    jq -e ".error.tool == \"cl-reward\" and .unknown_field.kept == [1,2,3]" out &&
    jq -e ".candidates[0].futures[0].scores.bleu == null" out
'
test_expect 'a record that fails comes out whole: its texts and fields as read, plus the error' '
    jq -c "del(.candidates[0].futures[1].extracted)" "$F/branch-document.jsonl" >in &&
    printf "{\"id\":\"c\",\"completion\":\"a reference text\",\"messages\":[],\"extracted\":{\"code\":\"x\"}}\n" >>in &&
    { cl-reward -Z --metric bleu --rejects rej in >out 2>err; test $? = 1; } &&
    test ! -s out && test "$(wc -l <rej)" = 2 &&
    jq -c "del(.error)" rej >back && jq -c . in >want && cmp back want
'
test_expect 'a score R* needs that is missing is an error for that record, never a zero' '
    { cl-reward -Z --weights "bleu=1,helpfulness=1" --metric bleu "$F/branch-document.jsonl" >out 2>err; test $? = 1; } &&
    grep -q "score .helpfulness. is missing" err && jq -e ".error.message | test(\"helpfulness\")" out &&
    jq -e ".candidates[0].futures[0].R == null" out
'
test_expect 'a candidate without futures cannot have an MR (except in verl mode, where it is 0)' '
    jq -c ".candidates[1].futures = []" "$F/branch-document.jsonl" >in &&
    { cl-reward -Z --weights "interactivity=1" in >out 2>err; test $? = 1; } &&
    grep -q "candidates\[1\] has no futures" err &&
    cl-reward -q -Z --reward verl --tokens words --metric bleu in >out2 &&
    jq -e ".candidates[1].mr | .n == 0 and .mean == 0" out2
'
test_expect 'usage errors exit 2: unknown metric, bad weights, two reward specs, --lambda alone' '
    { cl-reward --metric nope </dev/null 2>e1; test $? = 2; } && grep -q "unknown metric .nope." e1 &&
    { cl-reward --weights "bleu" </dev/null 2>e2; test $? = 2; } && grep -q "NAME=WEIGHT" e2 &&
    { cl-reward --reward paper --weights bleu=1 </dev/null 2>e3; test $? = 2; } &&
    { cl-reward --lambda 0.1 </dev/null 2>e4; test $? = 2; } && grep -q "need --reward" e4 &&
    { cl-reward --reward best </dev/null 2>e5; test $? = 2; } && grep -q "unknown mode" e5
'
test_expect 'output keeps input order across batches and threads' '
    jq -c "range(1; 301) as \$i | .id = \"d\(\$i)\"" "$F/branch-document.jsonl" >in &&
    cl-reward -q -Z --jobs 4 --batch 7 --metric bleu,bleu-word in >out &&
    test "$(jq -r .id out | tr "\n" " ")" = "$(seq 1 300 | sed "s/^/d/" | tr "\n" " ")" &&
    test "$(jq -c "[.candidates[].futures[].scores.bleu]" out | sort -u | wc -l)" = 1
'
test_expect 'zstd in and out, and --stats reports the units scored' '
    zstd -q -c "$F/branch-document.jsonl" >in.zst &&
    cl-reward -q --stats st.json --metric tokens --tokens words in.zst >out.zst &&
    zstd -dc out.zst | jq -e ".candidates[0].futures[0].scores.tokens == 21" && jq -e ".scored == 3" st.json
'
test_done
