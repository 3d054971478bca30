#!/bin/sh
# cl-finetune --dpo: every loss type drives reward accuracy to 1.0 with positive margins on a toy
# preference set; the reference log-probs are computed once and cached; the anchor set and the
# rpo NLL term; the pair shapes cl-pairs and the published datasets write.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
dpo() { cl-finetune --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 6 \
            --batch 4 --seed 2 -q "$@"; }

for loss in sigmoid hinge ipo robust; do
    ls=0; [ $loss = robust ] && ls=0.1
    test_expect "DPO with the $loss loss reaches reward accuracy 1.0 with positive margins" "
        dpo --loss $loss --label-smoothing $ls --run r &&
        jq -s -e '.[0][\"rewards/accuracies\"] < 1 and .[-1][\"rewards/accuracies\"] == 1 and
                  .[-1][\"rewards/margins\"] > 0.1 and .[-1][\"rewards/chosen\"] > .[-1][\"rewards/rejected\"]' r/metrics.jsonl
    "
done
test_expect 'the first DPO step starts from the reference: loss log 2, zero rewards' '
    dpo --run r --max-steps 1 &&
    jq -s -e ".[0] | (.loss - 0.6931471805599453 | fabs) < 1e-6 and .[\"rewards/margins\"] == 0" r/metrics.jsonl
'
test_expect 'reference log-probs are cached beside the run, tied to the data' '
    dpo --run r --max-steps 2 2>err && test -s r/ref-logps.bin &&
    test "$(head -c 8 r/ref-logps.bin)" = CLFTREF1 &&
    test "$(wc -c <r/ref-logps.bin)" = $((8 + 32 + 8 * 2 * 8))
'
test_expect 'the anchor set keeps the replies fluent where plain DPO breaks them' '
    dpo --run plain --epochs 10 && dpo --run anch --epochs 10 --anchor "$S/sft.jsonl" --anchor-weight 3 &&
    jq -s -e ".[-1][\"rewards/accuracies\"] == 1 and .[-1].anchor_loss < 0.1" anch/metrics.jsonl &&
    jq -c ".messages[0].content" "$S/sft.jsonl" >p &&
    "$FT" generate "$S/base/final" anch/final 24 <p >a && jq -c ".messages[1].content" "$S/sft.jsonl" >want &&
    diff want a && "$FT" generate "$S/base/final" plain/final 24 <p >b && ! cmp -s want b
'
test_expect '--rpo-alpha adds the chosen replies NLL to the loss and logs it' '
    dpo --run r --max-steps 1 --rpo-alpha 1 &&
    jq -s -e ".[0] | .nll > 0 and ((.loss - .dpo_loss - .nll) | fabs) < 1e-9" r/metrics.jsonl
'
test_expect 'string prompts and replies (published DPO rows) train like message arrays' '
    jq -c "{prompt: .prompt[0].content, chosen: .chosen[0].content, rejected: .rejected[0].content,
            score_chosen: 1, score_rejected: 0}" "$S/pairs.jsonl" >flat.jsonl &&
    cl-finetune --model "$S/base/final" --dpo flat.jsonl --lora r=4,alpha=8 --lr 1e-2 --max-steps 3 --batch 4 \
        --seed 2 -q --run a &&
    dpo --run b --max-steps 3 && cmp a/final/adapter_model.safetensors b/final/adapter_model.safetensors
'
test_expect 'an eval split reports held-out DPO accuracy and keeps the best checkpoint' '
    dpo --run r --eval-split 0.25 --eval-every 4 &&
    jq -s -e "[.[] | select(.eval_loss)] | length == 3 and .[-1][\"eval_rewards/accuracies\"] == 1" r/metrics.jsonl &&
    test -L r/best && test -f r/best/adapter_model.safetensors
'
test_expect 'the collabllm-dpo preset: beta 0.1, sigmoid, lr 5e-6, 8 epochs, LoRA r 32 alpha 16' '
    cl-finetune --preset collabllm-dpo --model "$S/base/final" --dpo "$S/pairs.jsonl" --run r --batch 8 -q &&
    jq -s -e "length == 8 and .[0].lr == 5e-06" r/metrics.jsonl &&
    jq -e ".r == 32 and .lora_alpha == 16" r/final/adapter_config.json
'
test_done
