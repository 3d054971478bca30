#!/bin/sh
# Offline DPO, online DPO and GRPO in the offline world, on the same rollout budget and the same
# optimizer steps, with pipelines/online.mk: the shipped passive base (examples/world-base) is
# the local: policy, world:user and world:judge the simulator and the judges, world math tasks
# the states.  offline: ROUNDS=1 SLICES=1 (one engine pass over every state with the starting
# policy, then 2*STEPS steps); online DPO and GRPO: ROUNDS=2 SLICES=2 (half the states per round,
# sampled by the current policy, STEPS steps each); GROUP = CANDIDATES, so the three sample as
# many replies.  eval.mk then benchmarks the starting policy and the three results on the held-out
# seeds (task success, ITR, tokens; 95% bootstrap intervals; differences against offline DPO),
# and the round wall times come from each run's rounds.jsonl.
# Needs the offline world (cl-seed --preset world).  Env: BIN, STATES_N (train draws, 300),
# HELD_N (test draws, 300), STEPS (8), CANDIDATES (2), LR (1e-3), THREADS (2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/.." && pwd)
BIN=${BIN:-$ROOT/bin}
STATES_N=${STATES_N:-300}
HELD_N=${HELD_N:-300}
STEPS=${STEPS:-8}
CANDIDATES=${CANDIDATES:-2}
LR=${LR:-1e-3}
export OMP_NUM_THREADS=${THREADS:-2}
BASE=$ROOT/examples/world-base
"$BIN/cl-seed" --list-presets | grep -q '^world' || { echo "bench-online: this build has no offline world" >&2; exit 1; }
w=${WORK:-$(mktemp -d)}
"$BIN/cl-seed" -q --preset world --split train --limit "$STATES_N" --seed 1 |
    "$BIN/cl-pairs" -q --where '.task == "math"' -o "$w/states.zst"
"$BIN/cl-seed" -q --preset world --split test --limit "$HELD_N" --seed 2 |
    "$BIN/cl-pairs" -q --where '.task == "math"' -o "$w/held.zst"
run() { # NAME make-arguments...
    name=$1; shift
    t0=$(date +%s.%N)
    make -s -f "$ROOT/pipelines/online.mk" STATES="$w/states.zst" HELDOUT="$w/held.zst" BASE="$BASE" BIN="$BIN" \
        TASK=math USER_MODEL=world:user JUDGE=world:judge CANDIDATES="$CANDIDATES" GROUP="$CANDIDATES" MIN_GAP=0 \
        OUT="$w/$name" "$@" all >"$w/$name.log" 2>&1 ||
        { cat "$w/$name.log" >&2; exit 1; }
    echo "$name $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >>"$w/wall"
}
: >"$w/wall"
# a step sees 4 states' replies in each method: 4 DPO pairs, or 8 GRPO replies
FT="--lr $LR --schedule constant --grad-accum 1"
run offline ROUNDS=1 SLICES=1 STEPS=$((2 * STEPS)) FT_FLAGS="$FT --batch 4"
run online ROUNDS=2 SLICES=2 STEPS="$STEPS" FT_FLAGS="$FT --batch 4"
run grpo ROUNDS=2 SLICES=2 STEPS="$STEPS" METHOD=grpo FT_FLAGS="$FT --batch $((4 * CANDIDATES))"
make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$w/held.zst" OUT="$w/cmp" BIN="$BIN" TASK=math USER_MODEL=world:user \
    JUDGE=world:judge BOOTSTRAP=2000 BASELINE=offline \
    MODELS="start=local:$BASE offline=$(cat "$w/offline/round-1/policy") online=$(cat "$w/online/round-2/policy") grpo=$(cat "$w/grpo/round-2/policy")" \
    all >"$w/cmp.log" 2>&1 || { cat "$w/cmp.log" >&2; exit 1; }
echo "### Offline DPO, online DPO and GRPO in the offline world (bench/bench-online.sh)"
echo
echo "$(zstd -dc "$w/states.zst" | wc -l) math states, $(zstd -dc "$w/held.zst" | wc -l) held-out math seeds;" \
     "$CANDIDATES replies per state; $((2 * STEPS)) optimizer steps each (lr $LR constant, 4 states per step, LoRA r 8;" \
     "DPO: the collabllm-dpo preset otherwise, GRPO: verl-grpo)."
echo
echo '```'
cat "$w/cmp/report.txt"
echo '```'
echo
echo "| run | rounds | wall s (whole run) | wall s per round (states to policy) |"
echo "|---|---|---|---|"
for n in offline online grpo; do
    echo "| $n | $(jq -s 'map(select(.round > 0)) | length' "$w/$n/rounds.jsonl") | $(awk -v n=$n '$1 == n { print $2 }' "$w/wall") |" \
         "$(jq -s -r '[.[] | select(.round > 0) | .round_s | tostring] | join(", ")' "$w/$n/rounds.jsonl") |"
done
