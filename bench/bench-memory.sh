#!/bin/sh
# Peak memory of cl-finetune against the bytes of the parameters it holds, on a 106M-parameter
# Llama (d 768, 8 layers, SwiGLU 2048, vocabulary 32000, untied): full SFT (weights, gradients
# and two AdamW moments are 4x the parameter bytes; the rest is activations and I/O, and the
# checkpoint writes the optimizer state piece by piece) and LoRA r 32 on all seven projections
# (the frozen base used in place from the safetensors mapping; with --bf16 the projections
# converted once).  Peak RSS from /usr/bin/time -v.  Env: BIN (programs), STEPS (2), BATCH (2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
STEPS=${STEPS:-2}
BATCH=${BATCH:-2}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
awk 'BEGIN { srand(7); split("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud field", v, " ");
    for (i = 0; i < 64; i++) { q = ""; a = "";
        for (j = 0; j < 30; j++) { q = q " " v[int(rand() * 15) + 1]; a = a " " v[int(rand() * 15) + 1] }
        printf "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]}\n", q, a } }' \
    >"$w/sft.jsonl"
cat >"$w/cfg.json" <<'CFG'
{"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 8,
 "num_attention_heads": 12, "num_key_value_heads": 12, "max_position_embeddings": 1024}
CFG
rss() { awk -F: '/Maximum resident set size/ { printf "%.0f", $2 * 1024 }' "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
row() { echo "| $1 | $(mib "$2") | $(mib "$3") | $(awk -v r="$3" -v b="$2" 'BEGIN { printf "%.2f", r / b }') | $4 |"; }
echo "### cl-finetune peak memory, 106M-parameter Llama, batch $BATCH, $STEPS steps ($(date -u +%Y-%m-%d))"
echo
sh "$here/cpu.sh"
echo
/usr/bin/time -v "$BIN/cl-finetune" --init "$w/cfg.json" --train-tokenizer "$w/sft.jsonl" --vocab 400 --full \
    --sft "$w/sft.jsonl" --batch "$BATCH" --max-steps "$STEPS" -q --run "$w/full" 2>"$w/full.time"
fp32=$(stat -c %s "$w/full/init/model.safetensors")
/usr/bin/time -v "$BIN/cl-finetune" --model "$w/full/init" --sft "$w/sft.jsonl" --lora r=32,alpha=16 \
    --batch "$BATCH" --max-steps "$STEPS" -q --run "$w/lora" 2>"$w/lora.time"
/usr/bin/time -v "$BIN/cl-finetune" --model "$w/full/init" --sft "$w/sft.jsonl" --lora r=32,alpha=16 --bf16 \
    --batch "$BATCH" --max-steps "$STEPS" -q --run "$w/bf16" 2>"$w/bf16.time"
# the bf16 base: projections at 2 bytes, embeddings, lm_head and norms at 4
n=$((fp32 / 4)); emb=$((2 * 32000 * 768 + 17 * 768)); bf16=$(((n - emb) * 2 + emb * 4))
echo "| run | parameter bytes (MiB) | peak RSS (MiB) | RSS / parameter bytes | target |"
echo "|---|---|---|---|---|"
row "full SFT (fp32 weights, grads, AdamW m and v, checkpoint)" "$fp32" "$(rss "$w/full.time")" "<= 4.2"
row "LoRA r 32, fp32 base in place" "$fp32" "$(rss "$w/lora.time")" "<= 1.2"
row "LoRA r 32, --bf16 base (converted from the fp32 file)" "$bf16" "$(rss "$w/bf16.time")" "<= 1.2"
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
