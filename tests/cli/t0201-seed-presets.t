#!/bin/sh
# cl-seed presets on fixture rows in the published shapes (written by us).
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/seed"
# pick FILE SELECT COND: exactly one record of FILE matches SELECT, and it satisfies COND
pick() { jq -e -s "[.[] | select($2)] | length == 1 and (.[0] | $3)" "$1" >/dev/null; }

test_expect 'math rows become math seeds with the last boxed answer beside the solution' '
    cl-seed -q -Z --preset math "$F/math.jsonl" >out &&
    test "$(wc -l <out)" = 5 &&
    pick out ".prompt|startswith(\"Simplify\")" ".task == \"math\" and .task_desc == \"question answering\"
           and .metadata.answer == \"\\\\frac{3}{4}\" and .metadata.level == \"Level 2\" and .metadata.type == \"Prealgebra\"
           and (.completion|contains(\"boxed\"))" &&
    pick out ".prompt == \"Solve \$2x=10\$.\"" ".metadata.answer == \"5\"" &&
    pick out ".prompt|startswith(\"What is the set\")" ".metadata.answer == \"\\\\{-1, 1\\\\}\""
'
test_expect 'a math row that carries answer and unique_id keeps both' '
    cl-seed -q -Z --preset math "$F/math.jsonl" >out &&
    pick out ".id == \"test/prealgebra/9001.json\"" ".metadata.answer == \"42\""
'
test_expect 'every seed has exactly the seven seed fields, in order' '
    for p in math bigcodebench; do cl-seed -q -Z --preset $p "$F/$p.jsonl" || exit 1; done >out &&
    jq -r "[keys_unsorted[]]|join(\",\")" out | sort -u >keys &&
    echo "id,task,task_desc,prompt,completion,metadata,split" | cmp - keys
'
test_expect 'a pretty-printed JSON array file gives the same seeds as its JSONL rows' '
    cl-seed -q -Z --preset math "$F/math-array.json" >a &&
    head -3 "$F/math.jsonl" | cl-seed -q -Z --preset math >b && cmp a b && test "$(wc -l <a)" = 3
'
test_expect 'array rows are cut at the right commas: brackets, commas and quotes inside strings are text' '
    printf "%s" "[{\"prompt\":\"a ] b, c\",\"completion\":\"[1,{2}]\"},{\"prompt\":\"say \\\"hi\\\", ]\",\"completion\":\"x\\\\\",\"meta\":[[1],{\"k\":[]}]}]" >in.json &&
    cl-seed -q -Z in.json >out && test "$(wc -l <out)" = 2 &&
    pick out ".prompt == \"a ] b, c\"" ".completion == \"[1,{2}]\"" &&
    pick out ".prompt == \"say \\\"hi\\\", ]\"" ".completion == \"x\\\\\" and .metadata.meta == [[1],{\"k\":[]}]"
'
test_expect 'a zstd-compressed JSON array is read too' '
    zstd -q -c "$F/math-array.json" >rows.json.zst && cl-seed -q -Z --preset math rows.json.zst >out &&
    test "$(wc -l <out)" = 3
'
test_expect 'bigcodebench rows become code seeds with test, entry point and the code_prompt requirement' '
    cl-seed -q -Z --preset bigcodebench "$F/bigcodebench.jsonl" >out &&
    pick out ".id == \"BigCodeBench/9001\"" ".task == \"code\" and .task_desc == \"code generation\"
           and (.prompt|startswith(\"Count the words\"))
           and .completion == \"import re\\ndef task_func(text):\\n    return len(re.findall(r\\\"\\\\w+\\\", text))\\n\"
           and .metadata.entry_point == \"task_func\" and .metadata.task_id == \"BigCodeBench/9001\"
           and (.metadata.test|contains(\"class TestCases\")) and (.metadata.libs|contains(\"re\"))
           and .metadata.code_prompt == \"import re\\ndef task_func(text):\\n\"
           and (.metadata.extraction_requirement|endswith(\"import re\\ndef task_func(text):\\n\"))"
'
test_expect 'a code seed completion passes its own unittest in python3' '
    command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 1; }
    cl-seed -q -Z --preset bigcodebench "$F/bigcodebench.jsonl" >out &&
    jq -r "select(.id == \"BigCodeBench/9000\") | .completion + \"\\n\" + .metadata.test + \"\\nunittest.main()\\n\"" out >prog.py &&
    python3 prog.py 2>log && grep -q OK log
'
test_expect 'medium rows become document seeds: title request with the article as hidden goal' '
    cl-seed -q -Z --preset medium --recent 1 "$F/medium.jsonl" >out && test "$(wc -l <out)" = 5 &&
    pick out ".metadata.title == \"Small Gardens\"" ".task == \"document\" and .task_desc == \"document editing\"
           and .completion == \"A balcony can feed a family of herbs all summer long.\"
           and (.prompt|contains(\"Small Gardens\")) and (. as \$s | .prompt|endswith(\$s.completion))
           and .metadata.url == \"https://example.org/d\" and .metadata.authors == [\"J. Park\"]
           and .metadata.tags == [\"Garden\"] and (.metadata.num_tokens_estimated | not) and .metadata.num_tokens == 12"
'
test_expect 'medium counts cl100k_base tokens (12 for that article), or estimates them on request; no rank file is 66' '
    cl-seed -q -Z --preset medium --recent 1 --token-count estimate "$F/medium.jsonl" >out &&
    pick out ".metadata.title == \"Small Gardens\"" ".metadata.num_tokens_estimated and .metadata.num_tokens > 5" &&
    { CL_CL100K=nowhere cl-seed -Z --preset medium --recent 1 "$F/medium.jsonl" >out 2>err; test $? = 66; } &&
    grep -q "token-count estimate" err &&
    { cl-seed -Z --preset math --token-count estimate "$F/medium.jsonl" 2>err; test $? = 2; } && grep -q "medium only" err
'
test_expect 'medium keeps the newest share of dated articles (recency split of the paper)' '
    cl-seed -Z --preset medium --recent 0.5 "$F/medium.jsonl" >out 2>err &&
    jq -r .metadata.title out | sort >titles && printf "Small Gardens\nWhy I Sold My Car\n" | cmp - titles &&
    grep -q "1 rows left out: no timestamp" err && grep -q "2 older rows left out" err
'
test_expect 'medium drops articles over --max-tokens, and num_tokens in a row wins over the estimate' '
    printf "%s\n" "{\"title\":\"T\",\"text\":\"short\",\"num_tokens\":900}" "{\"title\":\"U\",\"text\":\"short too\"}" >in &&
    cl-seed -Z --preset medium --recent 1 --max-tokens 512 in >out 2>err &&
    jq -r .metadata.title out | grep -qx U && test "$(wc -l <out)" = 1 && grep -q "over 512 tokens" err &&
    cl-seed -q -Z --preset medium --recent 1 --max-tokens 0 in >all &&
    pick all ".metadata.title == \"T\"" ".metadata.num_tokens == 900 and (.metadata.num_tokens_estimated|not)"
'
test_expect 'the medium paper defaults keep 2.5% of the newest articles' '
    for i in $(seq 1 80); do printf "{\"title\":\"t%d\",\"text\":\"x %d\",\"timestamp\":%d}\n" $i $i $((1500000000 + i)); done >in &&
    cl-seed -q -Z --preset medium in >out && jq -r .metadata.title out | sort >got && printf "t79\nt80\n" | cmp - got
'
test_expect 'abgcoqa rows (data[] of the published file) become qa seeds with the label as completion' '
    jq -c ".data[]" "$F/abgcoqa.json" | cl-seed -q -Z --preset abgcoqa >out && test "$(wc -l <out)" = 2 &&
    pick out ".id == \"fx-1\"" ".task == \"qa\" and .completion == \"ambiguous\" and .metadata.ambiguous
           and .metadata.target_question == \"Where did the cat sleep?\" and (.prompt|endswith(\"My question: Where did the cat sleep?\"))
           and (.prompt|contains(\"How many cats\")|not) and .metadata.source == \"ours\"" &&
    pick out ".id == \"fx-2\"" ".completion == \"non_ambiguous\" and (.metadata.ambiguous|not)"
'
test_expect 'abgcoqa --history puts the earlier questions into the prompt' '
    jq -c ".data[]" "$F/abgcoqa.json" | cl-seed -q -Z --preset abgcoqa --history >out &&
    pick out ".id == \"fx-1\"" ".prompt|contains(\"Q: How many cats did Nadia keep?\\nA: two\")"
'
test_expect 'generic rows: prompt and completion, other keys become metadata, own split and id kept' '
    cl-seed -q -Z "$F/generic.jsonl" >out &&
    pick out ".prompt|startswith(\"Name\")" ".task == \"generic\" and .completion == \"11\"
           and .metadata == {\"source\":\"ours\",\"difficulty\":1} and (.id|startswith(\"generic-\"))" &&
    pick out ".id == \"syn-1\"" ".split == \"test\""
'
test_expect 'official single_turn_* rows: one seed per task, metadata and task from the row' '
    cl-seed -Z --preset generic "$F/official.jsonl" >out 2>err && test "$(wc -l <out)" = 2 &&
    pick out ".prompt == \"Write a haiku about rain.\"" ".completion == \"Soft rain on the roof\" and .metadata == {\"topic\":\"rain\"}" &&
    pick out ".prompt|startswith(\"Sort\")" ".task == \"math\" and .task_desc == \"question answering\"" &&
    grep -q "1 duplicate prompts dropped" err
'
test_expect 'a null single_turn_prompt does not hide a plain prompt' '
    printf "{\"prompt\":\"p\",\"completion\":\"c\",\"single_turn_prompt\":null}\n" >in &&
    cl-seed -q -Z in >out && pick out ".prompt == \"p\"" ".completion == \"c\""
'
test_expect '--map turns any other row shape into generic rows' '
    printf "{\"q\":\"Capital of France?\",\"a\":\"Paris\"}\n" >in &&
    cl-seed -q -Z --map "{prompt: .q, completion: .a}" --task qa --task-desc "question answering" in >out &&
    jq -e ".prompt == \"Capital of France?\" and .completion == \"Paris\" and .task == \"qa\" and .metadata == {}" out
'
test_expect 'seeds are valid generic rows: feeding them back gives the same seeds' '
    cl-seed -q -Z --preset math "$F/math.jsonl" >a && cl-seed -q -Z a >b && cmp a b
'
test_expect 'ids without a dataset id are the same whatever the row order or file layout' '
    cl-seed -q -Z --preset math "$F/math-array.json" | jq -r .id | sort >a &&
    head -3 "$F/math.jsonl" | tac | cl-seed -q -Z --preset math | jq -r .id | sort >b && cmp a b
'
test_expect '--list-presets names every preset with its task and fields' '
    cl-seed --list-presets >out && test "$(wc -l <out)" = 6 && grep -q "^world .*no input" out &&
    grep -q "^math .*task math" out && grep -q "^bigcodebench .*task code .*entry_point" out &&
    grep -q "^medium .*task document" out && grep -q "^abgcoqa .*task qa" out && grep -q "^generic " out
'
test_done
