#!/bin/sh
# The offline world's passive base (examples/world-base, pipelines/world.mk): the shipped model
# copies the details a request gives and guesses the usual ones for the rest, and the recipe
# that made it runs (here on a model and data small enough for the suite).
. "$(dirname "$0")/lib.sh"
GREEDY="$CL_TESTBIN/greedy" TOK="$CL_TESTBIN/tok"
test -x "$GREEDY" && test -x "$TOK" || skip_all "build/tests/greedy or tok is not built (make check builds them)"
BASE="$ROOT/examples/world-base"

# chat OPENING: the Llama-3 prompt of one user message, as a JSON string.
chat() {
    jq -Rn --arg m "$1" '"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + $m +
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"'
}
# replies OPENING WANT: the base's greedy reply to OPENING is exactly WANT.
replies() {
    chat "$1" | "$GREEDY" "$BASE" --steps 40 | jq -c .greedy >got &&
    jq -Rn --arg s "$2" '$s' | "$TOK" encode "$BASE/tokenizer.json" >want &&
    diff want got
}

test_expect 'the shipped base is a model directory whose vocabulary is its tokenizer'"'"'s' '
    test "$(jq .vocab_size "$BASE/config.json")" -gt 256 &&
    test "$(jq ".model.vocab | length" "$BASE/tokenizer.json")" -le "$(jq .vocab_size "$BASE/config.json")" &&
    test "$(stat -c %s "$BASE/model.safetensors")" -lt 5000000
'
test_expect 'the base copies every detail a request gives' '
    replies "Write a note inviting Zoe to the trip on Monday." "Dear Zoe, join me for the trip on Monday." &&
    replies "Write a Python function mix(x) that returns x plus 6." "def mix(x):
    return x + 6"
'
test_expect 'the base guesses the usual values of the details a request leaves out, without asking' '
    replies "Write a note inviting a friend to the party." "Dear Sam, join me for the party on Friday."
'
test_expect 'the recipe (pipelines/world.mk) trains a base from scratch: dialogues, BPE, model files' '
    make -s -f "$ROOT/pipelines/world.mk" BIN="$CL_BIN" OUT=w DIALOGUES=60 HIDDEN=32 LAYERS=1 HEADS=2 \
        CONTEXT=128 VOCAB=300 base SHIP="$PWD/shipped" ship >log 2>&1 &&
    test "$(zstd -dc w/base1-sft.jsonl.zst | wc -l)" = 60 &&
    zstd -dc w/base1-sft.jsonl.zst | jq -e "(.messages[-1].role == \"assistant\") and
        (.messages[0].role == \"user\")" >/dev/null &&
    jq -e ".num_hidden_layers == 1 and .hidden_size == 32" shipped/config.json >/dev/null &&
    test -s shipped/model.safetensors && test -s shipped/tokenizer.json &&
    test "$(grep -c . w/base/metrics.jsonl)" -ge 1
'
test_done
