#!/bin/sh
# cl-finetune's errors: each names the file, line or field, exits with its own status, and a run
# that goes numerically wrong stops before it damages its last good checkpoint.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
M="$S/base/final"

test_expect 'an unknown architecture is refused naming model_type (exit 78)' '
    mkdir m && cp "$M"/* m/ && jq ".model_type = \"gpt2\"" "$M/config.json" >m/config.json &&
    { cl-finetune --model m --sft "$S/sft.jsonl" --run r 2>err; test $? = 78; } && grep -q "model_type" err
'
test_expect 'a checkpoint lacking a tensor is refused naming it (exit 65)' '
    mkdir m && cp "$M"/* m/ && jq ".num_hidden_layers = 3" "$M/config.json" >m/config.json &&
    { cl-finetune --model m --sft "$S/sft.jsonl" --run r 2>err; test $? = 65; } &&
    grep -q "model.layers.2.input_layernorm.weight: missing from the checkpoint" err
'
test_expect 'a hub name, or a directory without config.json, says a local model directory is needed (exit 66)' '
    { cl-finetune --model meta-llama/Llama-3.2-1B --sft "$S/sft.jsonl" --run r 2>err; test $? = 66; } &&
    grep -q "meta-llama/Llama-3.2-1B: no such model directory: --model needs a local directory in the Hugging Face layout.*huggingface-cli download meta-llama/Llama-3.2-1B --local-dir" err &&
    mkdir empty && { cl-finetune --model empty --sft "$S/sft.jsonl" --run r 2>err; test $? = 66; } &&
    grep -q "^cl-finetune: empty has no config.json: --model needs a local directory" err
'
test_expect 'an adapter names its base by an absolute path; DPO rows given to --sft are named, prompt and chosen trained' '
    cp -r "$M" base && cl-finetune --model base --sft "$S/pairs.jsonl" --max-steps 1 --run r 2>err &&
    jq -e --arg p "$(pwd -P)/base" ".base_model_name_or_path == \$p" r/final/adapter_config.json &&
    grep -q "pairs.jsonl: 8 of 8 rows are DPO pairs: SFT trains on their prompt and chosen reply and ignores the rejected one" err
'
test_expect 'a line that is not JSON is refused with file:line (exit 65)' '
    { head -2 "$S/sft.jsonl"; echo "{oops"; } >bad.jsonl &&
    { cl-finetune --model "$M" --sft bad.jsonl --run r 2>err; test $? = 65; } && grep -q "bad.jsonl:3: byte 2: " err
'
test_expect 'invalid UTF-8 or a raw NUL inside a string is refused with file:line:byte, as every reader does (exit 65)' '
    { head -1 "$S/sft.jsonl"; printf "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\\351\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}\n"; } >bad.jsonl &&
    { cl-finetune --model "$M" --sft bad.jsonl --run r 2>err; test $? = 65; } && grep -q "bad.jsonl:2: byte 47: .*UTF-8" err &&
    { head -1 "$S/sft.jsonl"; printf "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\000b\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}\n"; } >nul.jsonl &&
    { cl-finetune --model "$M" --sft nul.jsonl --run r 2>err; test $? = 65; } && grep -q "nul.jsonl:2: byte 45: .*control" err
'
test_expect 'a pair without "rejected" is refused naming the field and line (exit 65)' '
    { head -1 "$S/pairs.jsonl"; head -1 "$S/pairs.jsonl" | jq -c "del(.rejected)"; } >bad.jsonl &&
    { cl-finetune --model "$M" --dpo bad.jsonl --run r 2>err; test $? = 65; } &&
    grep -q "bad.jsonl:2: field \"rejected\" is missing" err
'
test_expect 'a message with a number for content is refused naming the field (exit 65)' '
    echo "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}" >bad.jsonl &&
    { cl-finetune --model "$M" --sft bad.jsonl --run r 2>err; test $? = 65; } && grep -q "bad.jsonl:1: field \"messages\"" err
'
test_expect 'rows left without an assistant token are counted and reported, the rest trains' '
    { cat "$S/sft.jsonl"; echo "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"; } >d.jsonl &&
    cl-finetune --model "$M" --sft d.jsonl --run r --max-steps 1 2>err &&
    grep -q "d.jsonl: 1 of 9 SFT rows have no assistant token left" err && grep -q "8 SFT rows" err
'
test_expect 'data with no usable row at all stops with exit 65' '
    echo "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}" >d.jsonl &&
    { cl-finetune --model "$M" --sft d.jsonl --run r 2>err; test $? = 65; } && grep -q "no usable SFT rows" err
'
test_expect 'long prompts are cut from the left so the reply still fits --max-len' '
    jq -c ".messages[0].content |= (. * 20)" "$S/sft.jsonl" >long.jsonl &&
    cl-finetune --model "$M" --sft long.jsonl --run r --max-len 40 --max-steps 1 2>err &&
    grep -q "8 SFT rows (8 truncated, 0 without loss tokens)" err
'
test_expect 'a diverging run stops at the first non-finite step and keeps its last good checkpoint (exit 70)' '
    { cl-finetune --model "$M" --full --sft "$S/sft.jsonl" --lr 10 --weight-decay 10 --schedule constant --epochs 20 \
        --batch 2 --save-every 1 --keep 0 --run r 2>err; test $? = 70; } &&
    grep -Eq "step ([0-9]+): the loss is .*last good checkpoint is r/checkpoint-0+" err &&
    n=$(sed -nE "s/.*step ([0-9]+): the loss.*/\1/p" err) && test "$(readlink r/last)" = "$(printf checkpoint-%06d $((n - 1)))" &&
    ! test -e "r/$(printf checkpoint-%06d $n)" && ! test -e r/final && test "$(wc -l <r/metrics.jsonl)" = $((n - 1))
'
test_expect 'usage errors exit 2 and say what is wrong' '
    { cl-finetune --model "$M" --sft "$S/sft.jsonl" 2>err; test $? = 2; } && grep -q "run DIR is required" err &&
    { cl-finetune --model "$M" --sft x --full --lora r=2 --run r 2>err; test $? = 2; } && grep -q "exclude" err &&
    { cl-finetune --model "$M" --sft x --full --merge --run r 2>err; test $? = 2; } && grep -q "merge needs LoRA" err &&
    { cl-finetune --model "$M" --sft x --anchor y --run r 2>err; test $? = 2; } && grep -q "go with --dpo" err &&
    { cl-finetune --model "$M" --dpo x --loss nope --run r 2>err; test $? = 2; } && grep -q "sigmoid, hinge" err &&
    { cl-finetune --model "$M" --dpo x --lora r=2,bogus=1 --run r 2>err; test $? = 2; } && grep -q "bogus" err &&
    { cl-finetune --preset nope --model "$M" --dpo x --run r 2>err; test $? = 2; } && grep -q "unknown preset" err &&
    { cl-finetune --resume nowhere 2>err; test $? = 66; } && ! test -e r
'
test_expect '--device: a bad name exits 2; cuda without a CUDA build or without a GPU exits 69 and says which' '
    { cl-finetune --model "$M" --sft "$S/sft.jsonl" --run r --device tpu 2>err; test $? = 2; } &&
    grep -q "cpu, cuda or cuda:N" err &&
    for bad in cudax cuda: cuda:x cuda:-1; do # misspelt: a usage error in every build, GPU or not
        { cl-finetune --model "$M" --sft "$S/sft.jsonl" --run r --device $bad 2>err; test $? = 2; } &&
        grep -q -- "--device" err && ! test -e r || { echo "--device $bad"; exit 1; }
    done &&
    { cl-finetune --model "$M" --sft "$S/sft.jsonl" --run r --recompute 2>err; test $? = 2; } &&
    grep -q "recompute needs --device cuda" err &&
    cl-finetune --model "$M" --sft "$S/sft.jsonl" --run cpu --device cpu --max-steps 1 -q &&
    test -s cpu/final/adapter_model.safetensors &&
    if "$CL_TESTBIN/cuda_probe" >/dev/null 2>&1; then
        echo "# a CUDA GPU is present: tests/unit/test_cuda_parity checks the device path"
    else
        { cl-finetune --model "$M" --sft "$S/sft.jsonl" --run r --device cuda:0 2>err; test $? = 69; } &&
        grep -Eq "built without CUDA \(rebuild with make CUDA=1\)|no usable CUDA GPU|has [0-9]+ CUDA GPU" err &&
        ! test -e r/final
    fi
'
test_done
