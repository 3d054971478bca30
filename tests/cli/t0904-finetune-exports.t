#!/bin/sh
# What cl-finetune writes loads back: the PEFT adapter and the merged model give our forward pass
# the same logits, a full model directory trains on, and GGUF exports load in real llama.cpp
# (node-llama-cpp) and decode greedily as our engine does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
NPM="$TESTS_DIR/npm"
ft_base "$S" 2>"$_top/base.err" &&
cl-finetune --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 10 --batch 4 \
    --anchor "$S/sft.jsonl" --anchor-weight 3 --merge --gguf --run "$S/dpo" -q 2>>"$_top/base.err" ||
    { cat "$_top/base.err"; echo "Bail out! cannot train the models"; exit 1; }
TEXT='<|begin_of_text|><|start_header_id|>user<|end_header_id|>

What is color 5?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

'
maxdiff() { paste "$1" "$2" | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d} END {print m + 0}'; }

test_expect 'the final adapter equals the last checkpoint and loads back into the base' '
    cmp "$S/dpo/final/adapter_model.safetensors" "$S/dpo/last/adapter_model.safetensors" &&
    "$FT" logits "$S/base/final" "$S/dpo/final" "$TEXT" >a && "$FT" logits "$S/base/final" "$S/dpo/last" "$TEXT" >b &&
    cmp a b && "$FT" logits "$S/base/final" - "$TEXT" >base && ! cmp -s a base
'
test_expect 'the merged model gives the adapted logits (within float rounding)' '
    "$FT" logits "$S/base/final" "$S/dpo/final" "$TEXT" >a && "$FT" logits "$S/dpo/merged" - "$TEXT" >m &&
    test "$(wc -l <a)" = "$(wc -l <m)" && awk "BEGIN {exit !($(maxdiff a m) < 1e-4)}" &&
    for f in config.json tokenizer.json model.safetensors; do test -s "$S/dpo/merged/$f" || exit 1; done
'
test_expect 'a merged model is a model directory cl-finetune trains on again' '
    cl-finetune --model "$S/dpo/merged" --sft "$S/sft.jsonl" --max-steps 2 -q --run r && test -s r/final/adapter_config.json
'
test_expect 'an adapter from another model shape is refused naming the projection (exit 65)' '
    jq ".hidden_size = 48" "$S/cfg.json" >c48 &&
    cl-finetune --init c48 --tokenizer "$S/base/init/tokenizer.json" --sft "$S/sft.jsonl" --max-steps 1 -q --run o &&
    { "$FT" logits o/final "$S/dpo/final" "x" >/dev/null 2>err; test $? = 65; } && grep -q "in the file, the model needs" err &&
    { cl-finetune --model o/final --adapter "$S/dpo/final" --sft "$S/sft.jsonl" --run r2 -q 2>err; test $? = 65; } &&
    grep -q "in the file, the model needs" err
'
test_expect '--bf16 keeps the base in bf16 and still learns the preference' '
    cl-finetune --model "$S/base/final" --bf16 --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 6 --batch 4 \
        -q --run r && jq -s -e ".[-1][\"rewards/accuracies\"] == 1" r/metrics.jsonl
'
test_expect 'GGUF exports are written: adapter.gguf and the merged model.gguf' '
    test "$(head -c 4 "$S/dpo/adapter.gguf")" = GGUF && test "$(head -c 4 "$S/dpo/model.gguf")" = GGUF
'
test_expect 'a Llama-3.1-style model (llama3 rope scaling) carries its rope_freqs into model.gguf' '
    jq ". + {rope_scaling: {rope_type: \"llama3\", factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0,
                             original_max_position_embeddings: 64}}" "$S/cfg.json" >c31 &&
    cl-finetune --init c31 --tokenizer "$S/base/init/tokenizer.json" --sft "$S/sft.jsonl" --max-steps 1 --gguf -q \
        --run r31 && "$CL_TESTBIN/fmt" gguf-info r31/model.gguf | grep -q "^rope_freqs.weight 0 \[4\]"
'
test_expect '--gguf-type f16 writes F16 matrices (norms F32); an unknown type is a usage error' '
    cl-finetune --model "$S/dpo/merged" --full --sft "$S/sft.jsonl" --max-steps 1 --lr 0 --gguf --gguf-type f16 -q \
        --run "$S/f16" && "$CL_TESTBIN/fmt" gguf-info "$S/f16/model.gguf" >info &&
    grep -q "^blk.0.attn_q.weight 1 " info && grep -q "^token_embd.weight 1 " info &&
    grep -q "^output_norm.weight 0 " info &&
    { cl-finetune --model "$S/dpo/merged" --sft "$S/sft.jsonl" --gguf --gguf-type q4 --run h2 2>err; test $? = 2; } &&
    grep -q -- "--gguf-type" err
'
if [ -d "$NPM/node_modules/node-llama-cpp" ] && command -v node >/dev/null; then
    test_expect 'llama.cpp decodes the F16 export of the merged model as our engine decodes the model' '
        jq -Rn --arg t "$TEXT" "\$t" >p && node "$NPM/llama-oracle.mjs" "$S/f16/model.gguf" --steps 12 <p >theirs &&
        "$CL_TESTBIN/greedy" "$S/dpo/merged" --steps 12 <p >ours && n=$(jq ".greedy | length" ours) &&
        test "$n" -gt 3 && test "$(jq -c ".greedy[:$n]" theirs)" = "$(jq -c .greedy ours)"
    '

    test_expect 'llama.cpp loads the merged GGUF, tokenizes the chat prompt as we do and decodes our greedy reply' '
        jq -Rn --arg t "$TEXT" "\$t" >p && node "$NPM/llama-oracle.mjs" "$S/dpo/model.gguf" --steps 12 <p >theirs &&
        "$CL_TESTBIN/greedy" "$S/dpo/merged" --steps 12 <p >ours && test "$(jq -c .ids theirs)" = "$(jq -c .ids ours)" &&
        n=$(jq ".greedy | length" ours) && test "$n" -gt 3 &&
        test "$(jq -c ".greedy[:$n]" theirs)" = "$(jq -c .greedy ours)"
    '
    test_expect 'llama.cpp loads the base GGUF with the LoRA GGUF and decodes as the adapted model' '
        cl-finetune --model "$S/base/final" --full --sft "$S/sft.jsonl" --max-steps 1 --lr 0 --gguf -q --run b &&
        jq -Rn --arg t "$TEXT" "\$t" >p &&
        node "$NPM/llama-oracle.mjs" b/model.gguf --lora "$S/dpo/adapter.gguf" --steps 12 <p >theirs &&
        "$CL_TESTBIN/greedy" "$S/base/final" "$S/dpo/final" --steps 12 <p >ours && n=$(jq ".greedy | length" ours) &&
        test "$(jq -c ".greedy[:$n]" theirs)" = "$(jq -c .greedy ours)"
    '
else
    echo "SKIP: node-llama-cpp missing (make oracles installs it): llama.cpp checks not run" >&2
    test_expect 'llama.cpp oracle is installed (make oracles)' 'false'
fi
test_done
