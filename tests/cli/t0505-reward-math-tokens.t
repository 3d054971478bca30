#!/bin/sh
# The local math answer check and the token counts, through cl-reward.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"
conv() { # reference-answer-json extracted-json assistant-text
    printf '{"task":"math","completion":"see \\\\boxed{7}","metadata":%s,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"%s"}]%s}\n' "$1" "$3" "$2"
}

test_expect 'an extracted answer wins over boxes in the messages, and may carry its own box' '
    conv "{\"answer\":\"\\\\frac{1}{2}\"}" ",\"extracted\":{\"answer\":\"\\\\boxed{0.5}\"}" "\\\\boxed{3}" >in &&
    cl-reward -q -Z --metric math in >out &&
    jq -e ".scores.math_equiv == 1 and .metric_info.math_equiv.answer == \"0.5\"" out
'
test_expect 'without metadata.answer the reference is the last box of the solution; numbers work too' '
    conv "{}" "" "so \\\\boxed{7}" >in && conv "{\"answer\":7}" "" "\\\\boxed{7}" >>in &&
    conv "{\"answer\":0.1}" "" "\\\\boxed{0.1}" >>in &&
    cl-reward -q -Z --metric math in >out &&
    jq -s -e "map(.scores.math_equiv) == [1, 1, 1] and .[0].metric_info.math_equiv.reference == \"7\"" out &&
    jq -s -e ".[2].metric_info.math_equiv.reference == \"0.1\"" out
'
test_expect 'replies are read the MATH benchmark'"'"'s way by default: \\fbox and \\boxed 7 give no answer; lenient reads them' '
    conv "{\"answer\":7}" "" "so \\\\fbox{7}" >in && conv "{\"answer\":7}" "" "so \\\\boxed 7" >>in &&
    conv "{\"answer\":7}" "" "so \\\\boxed{ 7 }" >>in &&
    cl-reward -q -Z --metric math in >out &&
    jq -s -e "map(.scores.math_equiv) == [0, 0, 1] and (map(.metric_info.math_equiv.answer) == [null, null, \" 7 \"])" out &&
    cl-reward -q -Z --metric math --math-extract lenient in >out2 &&
    jq -s -e "map(.scores.math_equiv) == [1, 1, 1] and all(.metric_info.math_equiv.extract == \"lenient\")" out2 &&
    { cl-reward -Z --metric math --math-extract exact in 2>err; test $? = 2; } && grep -q "reference or lenient" err
'
test_expect 'a seed with no reference answer at all is an error' '
    printf "{\"task\":\"math\",\"completion\":\"no box\",\"messages\":[]}\n" >in &&
    { cl-reward -Z --metric math in >out 2>err; test $? = 1; } && grep -q "no reference answer" err
'
test_expect 'usage counts need usage.completion_tokens on every counted message' '
    jq -c "del(.candidates[0].futures[1].messages[0].usage)" "$F/branch-document.jsonl" >in &&
    { cl-reward -Z --metric tokens --tokens usage in >out 2>err; test $? = 1; } &&
    grep -q "candidates\[0\].futures\[1\]: tokens: forward message 1 (user): usage.completion_tokens is missing" err
'
test_expect 'token roles and scope select what is counted' '
    cl-reward -q -Z --metric tokens --tokens usage --token-roles user "$F/branch-document.jsonl" >out &&
    jq -e "[.candidates[].futures[].scores.tokens] == [5, 4, 3]" out &&
    cl-reward -q -Z --metric tokens --tokens usage --token-scope session "$F/branch-document.jsonl" >out &&
    jq -e "[.candidates[].futures[].scores.tokens] == [37, 30, 23]" out
'
test_expect 'words are Python str.split() words, Unicode spaces included' '
    printf "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\\\\u00a0b\\\\u3000c  d\\\\n\"}]}\n" >in &&
    cl-reward -q -Z --metric tokens --tokens words in | jq -e ".scores.tokens == 4"
'
test_expect 'tiktoken:FILE counts with a rank file (two-byte merge "th" here)' '
    python3 -c "
import base64
with open(\"ranks.tiktoken\", \"w\") as f:
    for i in range(256):
        f.write(base64.b64encode(bytes([i])).decode() + \" %d\\n\" % i)
    f.write(base64.b64encode(b\"th\").decode() + \" 256\\n\")
" &&
    # "the" = th + e; "thin" = th + i + n; " ice" = four bytes: 2 + 3 + 4
    printf "{\"messages\":[{\"role\":\"user\",\"content\":\"the\"},{\"role\":\"assistant\",\"content\":\"thin ice\"}]}\n" >in &&
    cl-reward -q -Z --metric tokens --tokens tiktoken:ranks.tiktoken in >out &&
    jq -e ".scores.tokens == 9 and .metric_info.tokens.method == \"tiktoken\" and .metric_info.tokens.user == 2" out &&
    { cl-reward -q -Z --metric tokens --tokens tiktoken:missing in 2>err; test $? = 66; }
'
test_expect 'tokenizer:FILE counts with a model tokenizer.json, the same ids its encoder gives' '
    for i in $(seq 1 50); do echo "\"the thin ice of the river $i\""; done >corpus &&
    "$CL_TESTBIN/tok" train gpt2 300 <corpus >tokenizer.json &&
    printf "{\"messages\":[{\"role\":\"user\",\"content\":\"the river\"},{\"role\":\"assistant\",\"content\":\"thin ice 7\"}]}\n" >in &&
    cl-reward -q -Z --metric tokens --tokens tokenizer:tokenizer.json in >out &&
    u=$(echo "\"the river\"" | "$CL_TESTBIN/tok" encode tokenizer.json | jq length) &&
    a=$(echo "\"thin ice 7\"" | "$CL_TESTBIN/tok" encode tokenizer.json | jq length) &&
    test "$u" -ge 2 && test "$a" -ge 3 &&
    jq -e ".scores.tokens == ($u + $a) and .metric_info.tokens.method == \"tokenizer\" and .metric_info.tokens.user == $u" out &&
    { cl-reward -q -Z --metric tokens --tokens tokenizer:missing.json in 2>err; test $? = 66; }
'
test_done
