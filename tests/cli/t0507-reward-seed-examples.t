#!/bin/sh
# cl-seed's example seeds through cl-reward: the field contract between the two tools.
. "$(dirname "$0")/lib.sh"
E="$ROOT/examples"
[ -x /usr/bin/python3 ] || skip_all "/usr/bin/python3 is needed to run code tests"

test_expect 'every example code task passes its own unittest with its reference solution' '
    cl-seed -q --preset bigcodebench --split all -Z "$E/bigcodebench.jsonl" >seeds &&
    jq -c ". + {messages: [], extracted: {code: .completion}}" seeds >recs &&
    cl-reward -q -Z --metric pass_rate --timeout 60 --stats st.json recs >out &&
    test "$(wc -l <out)" -ge 20 &&
    jq -e ".sandbox.pass == $(wc -l <out) and .sandbox.fail == 0" st.json
'
test_expect 'the bare code prompt (signature, no body) fails every one of them' '
    cl-seed -q --preset bigcodebench --split all -Z "$E/bigcodebench.jsonl" >seeds &&
    jq -c ". + {messages: [], extracted: {code: (.metadata.code_prompt + \"    pass\n\")}}" seeds >recs &&
    cl-reward -q -Z --metric pass_rate --timeout 60 recs | jq -s -e "map(.scores.pass_rate) | add == 0"
'
test_expect 'every example math solution is equivalent to the answer cl-seed kept beside it (lenient extraction)' '
    cl-seed -q --preset math --split all -Z "$E/math.jsonl" >seeds &&
    jq -c ". + {messages: [{role: \"assistant\", content: .completion}]}" seeds >recs &&
    cl-reward -q -Z --metric math --math-extract lenient recs >out && test "$(wc -l <out)" -ge 20 &&
    jq -s -e "map(.scores.math_equiv) | all(. == 1)" out
'
test_expect 'the benchmark'"'"'s extraction (the default) reads every one except the brace-less \\boxed 36' '
    cl-seed -q --preset math --split all -Z "$E/math.jsonl" >seeds &&
    jq -c ". + {messages: [{role: \"assistant\", content: .completion}]}" seeds >recs &&
    cl-reward -q -Z --metric math recs >out &&
    jq -s -e "map(select(.scores.math_equiv == 0)) | length == 1 and .[0].metric_info.math_equiv == {answer: null, reference: \"36\", extract: \"reference\"}" out &&
    jq -s -e "(map(select(.scores.math_equiv == 1)) | length) == length - 1" out >/dev/null
'
test_done
