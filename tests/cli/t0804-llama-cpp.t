#!/bin/sh
# GGUF exports in real llama.cpp (node-llama-cpp, pinned in tests/npm): the model and LoRA
# files we write load, tokenize as our tokenizer does and decode greedily, deterministically.
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
test_expect 'llama.cpp loads our llama GGUF, tokenizes as we do and decodes greedily, twice alike' '
    tiny llama m && "$FMT" gguf m m.gguf && prompts &&
    node "$NPM/llama-oracle.mjs" m.gguf <p >o1 && node "$NPM/llama-oracle.mjs" m.gguf <p >o2 &&
    cmp o1 o2 && jq -c .ids o1 >theirs && "$TOK" encode tok.json <p >ours && cmp ours theirs &&
    test "$(jq ".greedy | length" o1 | sort -u)" = 8
'
test_expect 'llama.cpp loads a sharded BF16 qwen2 export and tokenizes (NFC, digits) as we do' '
    tiny qwen2 q BF16 60000 && "$FMT" gguf q q.gguf && prompts &&
    node "$NPM/llama-oracle.mjs" q.gguf <p >o && jq -c .ids o >theirs &&
    "$TOK" encode tok.json <p >ours && cmp ours theirs
'
test_expect 'a LoRA GGUF loads in llama.cpp and changes its greedy output' '
    tiny llama m && "$FMT" gguf m m.gguf && "$FMT" tiny-lora m ad 4 16 &&
    "$FMT" gguf-lora m ad ad.gguf && "$FMT" gguf-info ad.gguf | grep -q "^adapter.type lora" && prompts &&
    node "$NPM/llama-oracle.mjs" m.gguf <p >base &&
    node "$NPM/llama-oracle.mjs" m.gguf --lora ad.gguf <p >lora && ! cmp -s base lora &&
    test "$(jq -c .ids base)" = "$(jq -c .ids lora)"
'
test_done
