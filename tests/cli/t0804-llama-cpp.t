#!/bin/sh
# GGUF exports in real llama.cpp (node-llama-cpp, pinned in tests/npm): the model and LoRA
# files we write load, tokenize as our tokenizer does, and decode greedily to the same tokens as
# our own forward pass (lib/model/llama.c) on the same safetensors/PEFT files — which checks
# the q/k permutation, reversed dimensions, biases, bf16 and the LoRA scale end to end.
. "$(dirname "$0")/lib.sh"
TOK="$CL_TESTBIN/tok"
FMT="$CL_TESTBIN/fmt"
NPM="$TESTS_DIR/npm"
[ -d "$NPM/node_modules/node-llama-cpp" ] || skip_all "node-llama-cpp missing (make oracles installs it)"
command -v node >/dev/null || skip_all "node is missing"

tiny() { # tiny ARCH DIR [DTYPE] [SHARD_BYTES]: a trained tokenizer and a random model in DIR
    flavour=llama3; [ "$1" = qwen2 ] && flavour=qwen2
    "$TOK" corpus 3 2000 | "$TOK" train $flavour 400 >tok.json &&
    "$FMT" tiny-model "$2" "$1" tok.json ${3-} ${4-} && cp tok.json "$2/tokenizer.json"
}
prompts() { printf "%s\n" "\"Hello world, the quick brown fox\"" "\"caf\\u00e9 12345 it's\"" >p; }
GREEDY="$CL_TESTBIN/greedy"
ORACLE="$NPM/llama-oracle.mjs"

test_expect 'llama.cpp loads our llama GGUF and decodes greedily exactly as our forward pass' '
    tiny llama m && "$FMT" gguf m m.gguf && prompts &&
    node "$ORACLE" m.gguf <p >theirs && "$GREEDY" m <p >ours && cmp ours theirs &&
    test "$(jq ".greedy | length" ours | sort -u | tail -1)" = 8 && jq -c .ids ours >ids &&
    "$TOK" encode tok.json <p | cmp - ids
'
test_expect 'llama.cpp decodes a LoRA GGUF as our forward pass with the PEFT adapter does' '
    tiny llama m && "$FMT" gguf m m.gguf && "$FMT" tiny-lora m ad 4 16 &&
    "$FMT" gguf-lora m ad ad.gguf && prompts &&
    node "$ORACLE" m.gguf --lora ad.gguf <p >theirs && "$GREEDY" m ad <p >ours && cmp ours theirs &&
    "$GREEDY" m <p >base && ! cmp -s base ours
'
test_expect 'a sharded BF16 qwen2 export (biases, no permutation) decodes as our forward pass' '
    tiny qwen2 q BF16 60000 && "$FMT" gguf q q.gguf && prompts &&
    node "$ORACLE" q.gguf <p >theirs && "$GREEDY" q <p >ours && cmp ours theirs
'
test_expect 'a qwen2 LoRA GGUF decodes as our forward pass with the adapter, twice alike' '
    tiny qwen2 q BF16 && "$FMT" gguf q q.gguf && "$FMT" tiny-lora q ad 8 4 &&
    "$FMT" gguf-lora q ad ad.gguf && prompts &&
    node "$ORACLE" q.gguf --lora ad.gguf <p >theirs && "$GREEDY" q ad <p >ours && cmp ours theirs &&
    node "$ORACLE" q.gguf --lora ad.gguf <p >again && cmp theirs again
'
test_expect 'a Llama-3.1-style model (llama3 rope scaling as rope_freqs) decodes like our forward pass' '
    tiny llama3.1 m && "$FMT" gguf m m.gguf && "$FMT" gguf-info m.gguf | grep -q "^rope_freqs.weight 0 \[8\]" &&
    printf "%s\n" "\"The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat and dreams of fish, birds and mice.\"" >lp &&
    node "$ORACLE" m.gguf --steps 16 <lp >theirs && "$GREEDY" m --steps 16 <lp >ours && cmp ours theirs &&
    cp -r m plain && jq "del(.rope_scaling)" m/config.json >plain/config.json &&
    "$GREEDY" plain --steps 16 <lp >unscaled && ! cmp -s ours unscaled
'
test_expect 'the batching engine of local: decodes all prompts at once exactly as llama.cpp does' '
    tiny llama m && "$FMT" gguf m m.gguf &&
    printf "%s\n" "\"Hello world, the quick brown fox\"" "\"caf\\u00e9 12345 it'"'"'s\"" "\"a\"" \
        "\"The lazy dog sleeps on the warm mat and dreams\"" >p4 &&
    node "$ORACLE" m.gguf --steps 12 <p4 >theirs && "$GREEDY" m --engine --steps 12 <p4 >ours && cmp ours theirs &&
    test "$(jq ".greedy | length" ours | sort -u | tail -1)" = 12
'
test_expect 'the batching engine with bf16 weights decodes a bf16 qwen2 export as llama.cpp does' '
    tiny qwen2 q BF16 && "$FMT" gguf q q.gguf && prompts &&
    node "$ORACLE" q.gguf <p >theirs && "$GREEDY" q --engine --bf16 <p >ours && cmp ours theirs
'
test_done
