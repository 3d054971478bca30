#!/bin/sh
# pipelines/finetune.mk: SFT then DPO with the paper's presets as make targets (resumable), and
# loss curves drawn to PNG by gnuplot.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
command -v gnuplot >/dev/null || skip_all "gnuplot missing (scripts/install-deps installs gnuplot-nox)"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
MK="$ROOT/pipelines/finetune.mk"
png() { test "$(od -An -tx1 -N8 "$1" | tr -d " ")" = 89504e470d0a1a0a; }

test_expect 'plot draws a DPO run (loss, eval loss, accuracy and margin) to a PNG' '
    cl-finetune --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 10 --batch 2 \
        --eval-split 0.25 --eval-every 5 -q --run r &&
    make -s -f "$MK" plot RUN=r >/dev/null && png r/loss.png && ! ls r/loss.png.* 2>/dev/null
'
test_expect 'plot draws an SFT run to a PNG' '
    make -s -f "$MK" plot RUN="$S/base" PNG=sft.png >/dev/null && png sft.png
'
test_expect 'plot of a run without metrics fails with exit status and message' '
    mkdir empty && ! make -s -f "$MK" plot RUN=empty 2>err && grep -q "metrics.jsonl is missing" err
'
test_expect 'the pipeline runs SFT, merges, runs DPO on the merged model with an anchor, and plots both' '
    make -s -f "$MK" MODEL="$S/base/init" SFT="$S/sft.jsonl" DPO="$S/pairs.jsonl" ANCHOR="$S/sft.jsonl" OUT=o \
        FLAGS="--batch 4 -q" >/dev/null &&
    png o/sft/loss.png && png o/dpo/loss.png && test -s o/sft/merged/model.safetensors &&
    jq -e ".r == 32 and .lora_alpha == 16" o/dpo/final/adapter_config.json &&
    grep -q -- "--anchor" o/dpo/args.json && test -s o/dpo/model.gguf &&
    jq -s -e "length == 16 and .[0].lr == 5e-06" o/dpo/metrics.jsonl &&
    make -s -f "$MK" MODEL="$S/base/init" SFT="$S/sft.jsonl" DPO="$S/pairs.jsonl" OUT=o >out && ! test -s out
'
test_done
