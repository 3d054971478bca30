#!/bin/sh
# The from-scratch example of cl-finetune(1) runs as printed, and its results are what the page
# says: a model that answers, a DPO adapter, the merged model and GGUF files.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
# the example block after "the test suite runs this", with mdoc escapes undone
sed -n '/the test suite runs this/,/^\.Ed/p' "$ROOT/man/cl-finetune.1" | sed '1,2d;$d' |
    sed 's/\\e$/\\/; s/\\en/\\n/g' >"$_top/example.sh"

test_expect 'the man page has the from-scratch example' '
    grep -q "cl-finetune --init tiny.json" "$_top/example.sh" && grep -q -- "--merge --gguf" "$_top/example.sh"
'
test_expect 'the from-scratch example runs as printed and writes what the page names' '
    ln -s "$ROOT/examples" examples && sh -e "$_top/example.sh" 2>err &&
    test -s runs/tiny/final/model.safetensors && test -s runs/tiny-dpo/final/adapter_model.safetensors &&
    test -s runs/tiny-dpo/merged/model.safetensors && test -s runs/tiny-dpo/model.gguf &&
    test -s runs/tiny-dpo/adapter.gguf &&
    jq -s -e ".[-1][\"rewards/accuracies\"] == 1" runs/tiny-dpo/metrics.jsonl
'
test_done
