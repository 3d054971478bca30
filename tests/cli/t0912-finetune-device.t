#!/bin/sh
# cl-finetune --device cuda end to end: SFT memorises the eight dialogues on the device as on
# the CPU; a device checkpoint resumes on the CPU and a CPU checkpoint on the device (fp32
# safetensors and the same resume file either way); LoRA-DPO on the device reaches accuracy 1
# and writes the PEFT adapter, the merged model and both GGUF files; --recompute changes nothing
# but memory.
# The device binary is $CL_FINETUNE_CUDA when set (scripts/device-check), else the CUDA build's
# own cl-finetune when this machine has a GPU, else tests/cl-finetune-emu: cl-finetune over lib/cuda's host code with a CPU
# emulation of CUDA and cuBLAS (tests/cuda-emu), so the wiring is tested on every machine.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
if [ -z "${CL_FINETUNE_CUDA:-}" ] && "$CL_TESTBIN/cuda_probe" >/dev/null 2>&1; then
    CL_FINETUNE_CUDA=$CL_BIN/cl-finetune # make CUDA=1 test on a machine with a GPU
fi
DEV=${CL_FINETUNE_CUDA:-$CL_TESTBIN/cl-finetune-emu}
[ -x "$DEV" ] || skip_all "no CUDA-enabled cl-finetune here ($DEV): a CUDA=1 build tests the device with scripts/device-check"
S="$_top/shared"
ft_data "$S" || { echo "Bail out! cannot write the data"; exit 1; }
sft() { "$@" --init "$S/cfg.json" --train-tokenizer "$S/sft.jsonl" --vocab 300 --sft "$S/sft.jsonl" --lr 1e-2 \
            --schedule constant --epochs 150 --batch 8 --seed 1 --save-every 30 --keep 0; }
loss() { jq -s '.[-1].loss' "$1/metrics.jsonl"; }
sft "$DEV" --run "$S/dev" --device cuda 2>"$S/dev.err" &&
sft cl-finetune --run "$S/cpu" --device cpu -q || { cat "$S/dev.err"; echo "Bail out! cannot train"; exit 1; }

test_expect 'SFT on the device memorises the set as on the CPU, and says where it trained' '
    grep -q "training on cuda:0" "$S/dev.err" && grep -Eq "cuda:0: at most [0-9]+ MiB of device memory" "$S/dev.err" &&
    jq -s -e "length == 150 and .[0].loss > 4 and .[-1].loss < 0.05" "$S/dev/metrics.jsonl" &&
    jq -n -e --argjson g "$(loss "$S/dev")" --argjson c "$(loss "$S/cpu")" "\$c < 0.05 and (\$g - \$c | fabs) < 0.02" &&
    for f in config.json model.safetensors tokenizer.json; do test -s "$S/dev/final/$f" || exit 1; done
'
# a copy of run $1 rolled back to its step-120 checkpoint
rollback() {
    cp -r "$S/$1" "$2" && rm -rf "$2/checkpoint-000150" "$2/final" && ln -sfn checkpoint-000120 "$2/last"
}
test_expect 'a device checkpoint resumes on the CPU to the same end' '
    rollback dev r && cl-finetune --resume r --device cpu -q &&
    test "$(wc -l <r/metrics.jsonl)" = 150 &&
    jq -n -e --argjson r "$(loss r)" --argjson g "$(loss "$S/dev")" "(\$r - \$g | fabs) < 0.02 and \$r < 0.05"
'
test_expect 'a --recompute device run resumes on the CPU (the saved --recompute is dropped there, not refused)' '
    "$DEV" --model "$S/dev/init" --full --sft "$S/sft.jsonl" --lr 1e-2 --max-steps 4 --save-every 2 --keep 9 \
        --batch 8 --seed 1 --device cuda --recompute --run rc -q &&
    rm -rf rc/final rc/checkpoint-000004 && ln -sfn checkpoint-000002 rc/last &&
    cl-finetune --resume rc --device cpu -q && test "$(wc -l <rc/metrics.jsonl)" = 4 && test -s rc/final/model.safetensors &&
    { cl-finetune --resume rc --device cpu --recompute 2>err; test $? = 2; } && grep -q "recompute needs --device cuda" err
'
test_expect 'a CPU checkpoint resumes on the device to the same end' '
    rollback cpu r && "$DEV" --resume r --device cuda -q &&
    test "$(wc -l <r/metrics.jsonl)" = 150 &&
    jq -n -e --argjson r "$(loss r)" --argjson c "$(loss "$S/cpu")" "(\$r - \$c | fabs) < 0.02 and \$r < 0.05"
'
test_expect 'LoRA-DPO on the device reaches accuracy 1 and writes adapter, merged model and GGUF' '
    "$DEV" --model "$S/dev/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 6 --batch 4 \
        --seed 2 --run d --device cuda --merge --gguf -q &&
    jq -s -e ".[-1][\"rewards/accuracies\"] == 1 and .[-1][\"rewards/margins\"] > 0.1" d/metrics.jsonl &&
    for f in final/adapter_model.safetensors final/adapter_config.json adapter.gguf merged/model.safetensors model.gguf
    do test -s "d/$f" || exit 1; done
'
test_expect '--recompute (only layer inputs kept) trains to the same losses' '
    for rc in "" --recompute; do
        "$DEV" --model "$S/dev/init" --full --sft "$S/sft.jsonl" --lr 1e-2 --max-steps 20 --batch 8 --seed 1 \
            --device cuda $rc --run "r$rc" -q || exit 1
    done &&
    jq -s -e --slurpfile b r--recompute/metrics.jsonl "[.[].loss] as \$a | [\$b[].loss] as \$c |
        (\$a | length) == 20 and ([range(20) | (\$a[.] - \$c[.] | fabs)] | max) < 1e-3" r/metrics.jsonl
'
if [ "$DEV" = "$CL_TESTBIN/cl-finetune-emu" ]; then
    test_expect 'out of device memory exits 75 and says what to reduce (an emulated 1 MiB device)' '
        { CL_CUDA_EMU_MEM_MB=1 "$DEV" --model "$S/dev/init" --full --sft "$S/sft.jsonl" --max-steps 1 --batch 8 \
            --device cuda --run oom -q 2>err; test $? = 75; } &&
        grep -q "out of device memory" err && grep -q "reduce --batch or --max-len, add --recompute" err
    '
else
    test_skip 'out of device memory exits 75' 'needs the emulated device, whose memory a test can cap'
fi
test_done
