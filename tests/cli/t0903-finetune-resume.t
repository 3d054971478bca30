#!/bin/sh
# Resume: a run killed at an arbitrary point and continued with --resume ends with the very same
# weights (bytes) and metrics as one that never stopped; checkpoints are never half-written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }

test_expect 'LoRA DPO (dropout, accumulation, warmup, eval) killed mid-run and resumed equals the straight run' '
    set -- --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8,dropout=0.1 --lr 5e-3 --epochs 15 \
        --batch 2 --grad-accum 2 --save-every 3 --eval-split 0.25 --eval-every 5 --warmup-steps 3 -q &&
    cl-finetune "$@" --run a && kill_at b 000012 cl-finetune "$@" --run b &&
    ! test -e b/final && cl-finetune --resume b 2>err &&
    cmp a/final/adapter_model.safetensors b/final/adapter_model.safetensors && same_metrics a/metrics.jsonl b/metrics.jsonl
'
test_expect 'full SFT with LoRA-free dropout-free weights resumes bit for bit too (model.safetensors)' '
    set -- --model "$S/base/init" --full --sft "$S/sft.jsonl" --lr 3e-3 --epochs 12 --batch 3 --save-every 2 -q &&
    cl-finetune "$@" --run a && kill_at b 000012 cl-finetune "$@" --run b && ! test -e b/final &&
    cl-finetune "$@" --resume b &&
    cmp a/final/model.safetensors b/final/model.safetensors && same_metrics a/metrics.jsonl b/metrics.jsonl
'
test_expect 'the resumed run says where it continues and that step is before the end' '
    set -- --model "$S/base/init" --full --sft "$S/sft.jsonl" --lr 3e-3 --epochs 12 --batch 3 --save-every 1 &&
    kill_at b 000008 cl-finetune "$@" --run b 2>/dev/null && ! test -e b/final &&
    n=$(ls -d b/checkpoint-* | sed -n "\$s/.*-0*//p") && cl-finetune --resume b --log-every 1000 2>err &&
    grep -q "resuming b/checkpoint-$(printf %06d "$n") at step $n of 36" err && test "$n" -lt 36
'
test_expect 'a half-written checkpoint directory left by a kill is never taken as the latest' '
    set -- --model "$S/base/final" --sft "$S/sft.jsonl" --lora r=2,alpha=4 --epochs 4 --batch 2 --save-every 2 -q &&
    cl-finetune "$@" --run a && kill_at b 000002 cl-finetune "$@" --run b &&
    mkdir b/.tmp-checkpoint-000099 && : >b/.tmp-checkpoint-000099/trainer_state.bin &&
    cl-finetune --resume b && test "$(readlink b/last)" = checkpoint-000016 && ! test -e b/.tmp-checkpoint-000099 &&
    cmp a/final/adapter_model.safetensors b/final/adapter_model.safetensors
'
test_expect 'resuming with other training options is refused (exit 2) and changes nothing' '
    set -- --model "$S/base/final" --sft "$S/sft.jsonl" --lora r=2,alpha=4 --max-steps 2 -q &&
    cl-finetune "$@" --run a && cp -r a a0 &&
    { cl-finetune "$@" --lr 0.5 --resume a 2>err; test $? = 2; } && grep -q "other training options" err &&
    diff -r a a0
'
test_expect 'a damaged resume file is refused with its name (exit 65)' '
    cl-finetune --model "$S/base/final" --sft "$S/sft.jsonl" --lora r=2,alpha=4 --max-steps 2 -q --run a &&
    f=a/checkpoint-000002/trainer_state.bin && head -c 100 $f >t && mv t $f &&
    { cl-finetune --resume a 2>err; test $? = 65; } && grep -q "trainer_state.bin" err &&
    printf "XXXXXXXX" | dd of=a/checkpoint-000002/trainer_state.bin conv=notrunc 2>/dev/null &&
    { cl-finetune --resume a 2>err; test $? = 65; } && grep -q "not a cl-finetune resume file" err
'
test_expect 'a directory that holds a run is not overwritten by a new one (exit 2)' '
    cl-finetune --model "$S/base/final" --sft "$S/sft.jsonl" --max-steps 1 -q --run a && cp a/args.json args &&
    { cl-finetune --model "$S/base/final" --sft "$S/sft.jsonl" --max-steps 3 -q --run a 2>err; test $? = 2; } &&
    grep -q "already holds a run" err && cmp args a/args.json
'
test_expect 'checkpoints beyond --keep are pruned; the best and the last stay' '
    cl-finetune --model "$S/base/final" --sft "$S/sft.jsonl" --epochs 4 --batch 1 --save-every 4 --keep 2 -q --run a &&
    ls -d a/checkpoint-* >l && test "$(wc -l <l)" = 2 && test "$(readlink a/last)" = checkpoint-000032
'
test_done
