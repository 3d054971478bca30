#!/bin/sh
# cl-finetune --sft: a model created from scratch (--init, --train-tokenizer) memorises a small
# dialogue set and says it back through greedy decoding; packing, LoRA and the files it writes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }

test_expect 'a new model is written as config.json, model.safetensors and a trained tokenizer.json' '
    for f in config.json model.safetensors tokenizer.json; do test -s "$S/base/init/$f" || exit 1; done &&
    jq -e ".model_type == \"llama\" and .vocab_size > 256 and .vocab_size <= 300 and
           (.eos_token_id | index(.[0]) == 0)" "$S/base/init/config.json" &&
    jq -e "[.added_tokens[].content] | index(\"<|eot_id|>\") != null" "$S/base/init/tokenizer.json"
'
test_expect '--init without data writes the new model and trains nothing' '
    cl-finetune --init "$S/cfg.json" --train-tokenizer "$S/sft.jsonl" --vocab 280 --run r 2>err &&
    test -s r/init/model.safetensors && ! test -e r/final && ! test -s r/metrics.jsonl &&
    test "$(jq .vocab_size r/init/config.json)" -le 280 && grep -q "written to r/init" err
'
test_expect 'SFT drives the loss on eight dialogues to near zero' '
    jq -s -e "(.[0].loss > 4) and (.[-1].loss < 0.02) and (.[-1].step == 150)" "$S/base/metrics.jsonl"
'
test_expect 'the trained model says every memorised answer back under greedy decoding' '
    jq -c ".messages[0].content" "$S/sft.jsonl" | "$FT" generate "$S/base/final" - 24 >got &&
    jq -c ".messages[1].content" "$S/sft.jsonl" >want && diff want got
'
test_expect 'packed rows (three dialogues each: positions restart, attention stays inside each) learn the same set' '
    cl-finetune --model "$S/base/init" --full --sft "$S/sft.jsonl" --packing --max-len 128 --run r \
        --lr 1e-2 --schedule constant --epochs 150 --batch 8 --seed 1 -q &&
    jq -s -e ".[-1].loss < 0.02 and .[-1].tokens <= 3 * 128" r/metrics.jsonl &&
    test "$(jq -s ".[-1].tokens" r/metrics.jsonl)" != "$(jq -s ".[-1].tokens" "$S/base/metrics.jsonl")" &&
    jq -c ".messages[0].content" "$S/sft.jsonl" | "$FT" generate r/final - 24 >got &&
    jq -c ".messages[1].content" "$S/sft.jsonl" >want && diff want got
'
test_expect 'LoRA SFT writes a PEFT adapter with the requested rank, alpha and targets' '
    cl-finetune --model "$S/base/init" --sft "$S/sft.jsonl" --run r --lora r=4,alpha=8,targets=q,v,down \
        --epochs 2 --batch 4 -q &&
    jq -e ".peft_type == \"LORA\" and .r == 4 and .lora_alpha == 8 and
           (.target_modules | sort) == [\"down_proj\", \"q_proj\", \"v_proj\"]" r/final/adapter_config.json &&
    test -s r/final/adapter_model.safetensors && ! test -e r/final/model.safetensors
'
test_expect 'the collabllm-sft preset sets the paper numbers and later flags override them' '
    cl-finetune --preset collabllm-sft --model "$S/base/init" --sft "$S/sft.jsonl" --run r --max-steps 2 -q &&
    jq -e ".r == 32 and .lora_alpha == 16 and .lora_dropout == 0.1 and
           (.target_modules | length) == 7" r/final/adapter_config.json &&
    jq -s -e ".[0].lr == 1e-05" r/metrics.jsonl &&
    cl-finetune --lr 2e-5 --preset collabllm-sft --model "$S/base/init" --sft "$S/sft.jsonl" --run r2 --max-steps 1 -q &&
    jq -s -e ".[0].lr == 2e-05" r2/metrics.jsonl
'
test_expect 'progress on stderr names step, loss, tokens/s and ETA; -o copies the metrics records' '
    cl-finetune --model "$S/base/init" --full --sft "$S/sft.jsonl" --run r --epochs 3 --batch 4 --log-every 1 \
        -o m.jsonl.zst 2>err &&
    grep -Eq "step 6/6 epoch 3.00 loss [0-9.]+ lr .* tok/s eta" err &&
    zstd -dc m.jsonl.zst >m && cmp m r/metrics.jsonl && test "$(wc -l <m)" = 6
'
test_expect '--stats writes the run totals as JSON' '
    cl-finetune --model "$S/base/init" --full --sft "$S/sft.jsonl" --run r --epochs 2 --batch 4 --eval-split 0.25 \
        --eval-every 1 -q --stats st.json &&
    jq -e ".rows == 8 and .examples == 6 and .eval_examples == 2 and .steps == 4 and .steps_run == 4 and
           .tokens > 0 and .last_loss > 0 and .best_step >= 1 and .trainable > 30000" st.json
'
test_done
