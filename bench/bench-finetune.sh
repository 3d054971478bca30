#!/bin/sh
# cl-finetune training throughput and peak memory on a GPT-2-small-sized Llama (d 768, 12
# layers, 12 heads, SwiGLU 2048, vocabulary 32000, untied embeddings; 134M parameters): full-weight SFT and LoRA DPO
# (r 32, alpha 16, all seven projections), against PyTorch on the CPU doing the same optimizer
# step on the same batch shape and loss tokens (bench/torch_finetune.py), in one run.
# cl's numbers come from the tool itself (a --init model, real data rendered with its chat
# template, metrics.jsonl); the step time is the median of steps 2..N; peak memory is the
# maximum resident set size of the whole process (/usr/bin/time).
# Env: BIN (programs), THREADS (default 2), STEPS (default 4), SFT_BATCH (4), DPO_PAIRS (2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
THREADS=${THREADS:-2}
STEPS=${STEPS:-4}
SFT_BATCH=${SFT_BATCH:-4}
DPO_PAIRS=${DPO_PAIRS:-2}
command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c "import torch" 2>/dev/null ||
    { echo "bench-finetune: python3-torch missing (apt-get install python3-torch)" >&2; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
export OMP_NUM_THREADS=$THREADS
# Dialogues of about 60 tokens: a 30-word question and a 30-word answer from a small lexicon
# (the tokenizer trained on it keeps roughly one token per word).
awk 'BEGIN { srand(7); split("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud field", v, " ");
    for (i = 0; i < 64; i++) { q = ""; a = "";
        for (j = 0; j < 30; j++) { q = q " " v[int(rand() * 15) + 1]; a = a " " v[int(rand() * 15) + 1] }
        printf "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]}\n", q, a } }' \
    >"$w/sft.jsonl"
jq -c '{prompt: [.messages[0]], chosen: [.messages[1]],
        rejected: [{role: "assistant", content: (.messages[1].content | split(" ") | reverse | join(" "))}]}' \
    "$w/sft.jsonl" >"$w/pairs.jsonl"
cat >"$w/cfg.json" <<'CFG'
{"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
 "num_attention_heads": 12, "num_key_value_heads": 12, "max_position_embeddings": 1024}
CFG
rss() { awk -F: '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }
# step time: median over steps 2..N of the elapsed differences; cells = rows x padded length
cl_step() { jq -s -r '[range(1; length) as $i | .[$i].elapsed_s - .[$i - 1].elapsed_s] | sort | .[length / 2 | floor]' "$1"; }
cl_cpu() { jq -s -r '[range(1; length) as $i | .[$i].cpu_s - .[$i - 1].cpu_s] | sort | .[length / 2 | floor]' "$1"; }
cl_cells() { jq -s -r '.[-1].tokens' "$1"; }

/usr/bin/time -v "$BIN/cl-finetune" --init "$w/cfg.json" --train-tokenizer "$w/sft.jsonl" --vocab 400 --full \
    --sft "$w/sft.jsonl" --batch "$SFT_BATCH" --max-steps "$STEPS" --lr 1e-5 -q --run "$w/sft" 2>"$w/sft.time"
/usr/bin/time -v "$BIN/cl-finetune" --model "$w/sft/init" --dpo "$w/pairs.jsonl" --lora r=32,alpha=16 \
    --batch "$DPO_PAIRS" --max-steps "$STEPS" --lr 5e-6 -q --run "$w/dpo" 2>"$w/dpo.time"
sft_s=$(cl_step "$w/sft/metrics.jsonl"); sft_cells=$(cl_cells "$w/sft/metrics.jsonl"); sft_c=$(cl_cpu "$w/sft/metrics.jsonl")
dpo_s=$(cl_step "$w/dpo/metrics.jsonl"); dpo_cells=$(cl_cells "$w/dpo/metrics.jsonl"); dpo_c=$(cl_cpu "$w/dpo/metrics.jsonl")
# the batch shapes cl used: rows and padded length; loss from the assistant header on (about half)
sft_t=$((sft_cells / SFT_BATCH)); dpo_t=$((dpo_cells / (2 * DPO_PAIRS)))
/usr/bin/time -v /usr/bin/python3 "$here/torch_finetune.py" sft "$SFT_BATCH" "$sft_t" $((sft_t / 2)) "$STEPS" "$THREADS" \
    >"$w/tsft" 2>"$w/tsft.time"
/usr/bin/time -v /usr/bin/python3 "$here/torch_finetune.py" dpo $((2 * DPO_PAIRS)) "$dpo_t" $((dpo_t / 2)) "$STEPS" "$THREADS" \
    >"$w/tdpo" 2>"$w/tdpo.time"
tsft_s=$(awk '{print $5}' "$w/tsft"); tdpo_s=$(awk '{print $5}' "$w/tdpo")
tsft_c=$(awk '{print $7}' "$w/tsft"); tdpo_c=$(awk '{print $7}' "$w/tdpo")
cpu=$(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)
tps() { awk -v c="$1" -v s="$2" 'BEGIN { printf "%.0f", c / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo "### cl-finetune vs PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') CPU, GPT-2-small-sized Llama (134M; $(date -u +%Y-%m-%d); $cpu; $THREADS threads; load average $(cut -d' ' -f1 /proc/loadavg))"
echo
sh "$here/cpu.sh"
echo
echo "| step | batch (rows x tokens) | cl s/step | cl tokens/s | torch s/step | torch tokens/s | cl speed-up (wall) | cl tokens/CPU-s | torch tokens/CPU-s | cl speed-up (CPU) | cl peak RSS (MiB) | torch peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "| full SFT | $SFT_BATCH x $sft_t | $(printf %.3f "$sft_s") | $(tps "$sft_cells" "$sft_s") | $tsft_s | $(tps "$sft_cells" "$tsft_s") | $(ratio "$sft_s" "$tsft_s") | $(tps "$sft_cells" "$sft_c") | $(tps "$sft_cells" "$tsft_c") | $(ratio "$sft_c" "$tsft_c") | $(rss "$w/sft.time") | $(rss "$w/tsft.time") |"
echo "| LoRA DPO (r 32) | $((2 * DPO_PAIRS)) x $dpo_t | $(printf %.3f "$dpo_s") | $(tps "$dpo_cells" "$dpo_s") | $tdpo_s | $(tps "$dpo_cells" "$tdpo_s") | $(ratio "$dpo_s" "$tdpo_s") | $(tps "$dpo_cells" "$dpo_c") | $(tps "$dpo_cells" "$tdpo_c") | $(ratio "$dpo_c" "$tdpo_c") | $(rss "$w/dpo.time") | $(rss "$w/tdpo.time") |"
echo
echo "tokens/s counts every row position of the padded batch; both sides predict the same number of tokens"
echo "per row (cl: the assistant reply and its end-of-turn; torch: the second half of the row). cl's RSS"
echo "includes writing the new model (SFT) and the cached reference pass (DPO); torch's the interpreter."
