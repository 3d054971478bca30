#!/bin/sh
# Model files: safetensors (single and sharded), PEFT adapters and GGUF exports, checked by our
# own readers, by independent parsing (jq) and by real llama.cpp (node-llama-cpp).
. "$(dirname "$0")/lib.sh"
TOK="$CL_TESTBIN/tok"
FMT="$CL_TESTBIN/fmt"
NPM="$TESTS_DIR/npm"

tiny() { # tiny ARCH DIR [DTYPE] [SHARD_BYTES]: a trained tokenizer and a random model in DIR
    flavour=llama3; [ "$1" = qwen2 ] && flavour=qwen2
    "$TOK" corpus 3 2000 | "$TOK" train $flavour 400 >tok.json &&
    "$FMT" tiny-model "$2" "$1" tok.json ${3-} ${4-} && cp tok.json "$2/tokenizer.json"
}
header() { # the JSON header of a safetensors file
    n=$(od -An -tu8 -N8 "$1" | tr -d " ") && tail -c +9 "$1" | head -c "$n"
}

test_expect 'a single-file checkpoint has a space-padded header, format pt and contiguous offsets' '
    tiny llama m && test -f m/model.safetensors && ! test -f m/model.safetensors.index.json &&
    n=$(od -An -tu8 -N8 m/model.safetensors | tr -d " ") && test $((n % 8)) = 0 &&
    header m/model.safetensors >h && test "$(jq -r .__metadata__.format h)" = pt &&
    jq -e "[to_entries[] | select(.key != \"__metadata__\") | .value.data_offsets] | sort |
           . as \$o | all(range(1; length); \$o[.][0] == \$o[. - 1][1]) and \$o[0][0] == 0" h &&
    test "$(jq "[.[] | .data_offsets? // empty | .[1]] | max" h)" = $(( $(wc -c <m/model.safetensors) - 8 - n ))
'
test_expect 'F32, F16 and BF16 checkpoints read back with the dtype, shape and bytes written' '
    for d in F32 F16 BF16; do
        tiny llama m$d $d && "$FMT" st-info m$d/model.safetensors >info$d &&
        grep -q "^model.layers.0.self_attn.q_proj.weight $d \[64,64\]" info$d &&
        grep -q "^model.layers.0.input_layernorm.weight F32 \[64\]" info$d || return 1
    done && ! cmp -s infoF32 infoBF16
'
test_expect 'a sharded checkpoint writes an index naming every tensor once and reads back whole' '
    tiny llama one && tiny llama sh F32 60000 && ls sh/model-0000*-of-0000*.safetensors >shards &&
    test "$(wc -l <shards)" -gt 2 &&
    test "$(jq ".weight_map | length" sh/model.safetensors.index.json)" = "$(grep -c . <<EOF2
$("$FMT" st-info sh)
EOF2
)" && "$FMT" st-info sh >a && "$FMT" st-info one >b && cmp a b
'
test_expect 'a shard missing from the index, or listed in the wrong file, is refused' '
    tiny llama sh F32 60000 &&
    jq ".weight_map |= del(.[\"lm_head.weight\"])" sh/model.safetensors.index.json >x &&
    cp x sh/model.safetensors.index.json && { "$FMT" st-info sh 2>err; test $? = 65; } &&
    grep -q "total_size" err
'
# mk_st HEADER DATA_BYTES FILE: a safetensors file with that header and zero data.
mk_st() {
    printf "%s" "$1" >h.json && n=$(wc -c <h.json) &&
    node -e "const b=Buffer.alloc(8);b.writeBigUInt64LE(BigInt($n));process.stdout.write(b)" >"$3" &&
    cat h.json >>"$3" && head -c "$2" /dev/zero >>"$3"
}
test_expect 'overlapping tensors are refused with the tensor named' '
    mk_st "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}" 12 f &&
    { "$FMT" st-info f 2>err; test $? = 65; } && grep -q "b: overlaps" err
'
test_expect 'a gap between tensors and trailing bytes are refused' '
    mk_st "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}" 12 f &&
    { "$FMT" st-info f 2>err; test $? = 65; } && grep -q "gap of 4 bytes" err &&
    mk_st "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" 9 g &&
    { "$FMT" st-info g 2>err; test $? = 65; } && grep -q "5 bytes after the last tensor" err
'
test_expect 'a wrong dtype, a shape that does not fit its bytes and a huge header size are refused' '
    mk_st "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}" 4 f &&
    { "$FMT" st-info f 2>err; test $? = 65; } && grep -q "dtype Q4 is not supported" err &&
    mk_st "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}" 4 g &&
    { "$FMT" st-info g 2>err; test $? = 65; } && grep -q "4 bytes for a BF16 tensor of 3 elements" err &&
    printf "\377\377\377\377\377\377\377\177{}" >h && { "$FMT" st-info h 2>err; test $? = 65; } &&
    grep -q "over the 100 MB limit" err
'
test_expect 'every truncation of a checkpoint is refused cleanly, never a crash' '
    tiny llama m && head -c 30000 m/model.safetensors >t1 && head -c 7 m/model.safetensors >t2 &&
    head -c 200 m/model.safetensors >t3 && for f in t1 t2 t3; do
        "$FMT" st-info $f 2>err; rc=$?; test $rc = 65 || { cat err; return 1; }
    done
'
test_expect 'a PEFT adapter has the standard config keys and A (r x in), B (out x r) shapes' '
    tiny llama m && "$FMT" tiny-lora m ad 4 16 &&
    test "$(jq -r ".peft_type, .r, .lora_alpha, .bias, (.target_modules | length), .task_type" ad/adapter_config.json | tr "\n" " ")" = "LORA 4 16 none 7 CAUSAL_LM " &&
    "$FMT" st-info ad/adapter_model.safetensors >info &&
    grep -q "^base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight F32 \[4,64\]" info &&
    grep -q "^base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight F32 \[32,4\]" info &&
    grep -q "^base_model.model.model.layers.0.mlp.down_proj.lora_A.weight F32 \[4,128\]" info &&
    test "$(grep -c lora_ info)" = 28 && "$FMT" peft-info ad >p && head -1 p | grep -q "scale 4 targets 7"
'
test_expect 'a DoRA adapter, an unknown target and a B of the wrong rank are refused' '
    tiny llama m && "$FMT" tiny-lora m ad 4 16 && cp -r ad dora && cp -r ad tgt &&
    jq ".use_dora = true" ad/adapter_config.json >dora/adapter_config.json &&
    { "$FMT" peft-info dora 2>err; test $? = 65; } && grep -q use_dora err &&
    jq ".target_modules = [\"q_proj\"]" ad/adapter_config.json >tgt/adapter_config.json &&
    { "$FMT" peft-info tgt 2>err; test $? = 65; } && grep -q "not in target_modules" err &&
    cp -r ad rank && jq ".r = 8" ad/adapter_config.json >rank/adapter_config.json &&
    { "$FMT" peft-info rank 2>err; test $? = 65; } && grep -q "does not have rank r=8" err
'
test_expect 'GGUF dimensions are the reverse of the PyTorch shapes and carry the tokenizer' '
    tiny llama m && "$FMT" gguf m m.gguf && "$FMT" gguf-info m.gguf >g &&
    grep -q "^token_embd.weight 0 \[64,400\]" g && grep -q "^blk.1.ffn_down.weight 0 \[128,64\]" g &&
    grep -q "^tokenizer.ggml.pre llama-bpe" g && grep -q "^general.architecture llama" g
'
test_expect 'llama q/k rows are permuted on export, v and every qwen2 projection are not' '
    tiny llama m && "$FMT" gguf m m.gguf && "$FMT" st-info m >hf && "$FMT" gguf-info m.gguf >g &&
    h() { grep "^$1 " "$2" | cut -d" " -f4; } &&
    test "$(h model.layers.0.self_attn.q_proj.weight hf)" != "$(h blk.0.attn_q.weight g)" &&
    test "$(h model.layers.0.self_attn.k_proj.weight hf)" != "$(h blk.0.attn_k.weight g)" &&
    test "$(h model.layers.0.self_attn.v_proj.weight hf)" = "$(h blk.0.attn_v.weight g)" &&
    tiny qwen2 q && "$FMT" gguf q q.gguf && "$FMT" st-info q >hq && "$FMT" gguf-info q.gguf >gq &&
    test "$(h model.layers.0.self_attn.q_proj.weight hq)" = "$(h blk.0.attn_q.weight gq)"
'
test_done
