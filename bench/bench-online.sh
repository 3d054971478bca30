#!/bin/sh
# Offline DPO, online DPO and GRPO in the offline world, on the same rollout calls and the same
# optimizer steps, with pipelines/online.mk.  The shipped passive base (examples/world-base) is
# the local: policy, world: the simulated user and the judges, world tasks of the three families
# the states.  Every method samples its candidates from a policy (K per state, hot) and the
# forward samples that score them from the same policy; MR = success + 0.5 interactivity - 0.5
# per thousand words (make demo's weights).
#   offline: ROUNDS=1 SLICES=1: one engine pass over every state with the starting policy, then
#            ROUNDS*STEPS steps;
#   online:  ROUNDS rounds over 1/ROUNDS of the states each, sampled by the current policy,
#            STEPS steps each, weights and AdamW state carried over;
#   grpo:    as online, GRPO on the K candidates of each state (their MR the rewards).
# DPO is make demo's recipe in one run: full fine-tuning, DPO on the MR pairs plus the SFT loss of
# the MR-best dialogues (--anchor, weight ANCHOR) in every step.  eval.mk then benchmarks the
# starting policy and the three results on held-out tasks, greedy (task success, ITR, words;
# 95% bootstrap intervals; paired differences against offline DPO), and the per-round wall
# times and held-out metrics come from each run's rounds.jsonl (the chart: online/rounds.png).
# The three runs go side by side, one thread each; so the wall times are those of a shared machine.
# Needs the offline world (cl-seed --preset world).  Env: BIN, STATES_N (training tasks, 240),
# HELD_N (held-out tasks, 210), ROUNDS (3), STEPS (per round, 20), K (6), TEMP (1.5), SAMPLES
# (forward samples per candidate, 1), TURNS (assistant turns of a state, 2), LR (3e-4), GRPO_LR
# (LR), SFT_MIN (accuracy>=1), BATCH (8), ANCHOR (3), METHODS (offline online grpo), THREADS (1), WORK (a
# directory to keep).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/.." && pwd)
BIN=${BIN:-$ROOT/bin}
STATES_N=${STATES_N:-240}
HELD_N=${HELD_N:-210}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-20}
K=${K:-6}
TEMP=${TEMP:-1.5}
LR=${LR:-3e-4}
GRPO_LR=${GRPO_LR:-$LR}
BATCH=${BATCH:-8}
ANCHOR=${ANCHOR:-3}
SAMPLES=${SAMPLES:-1}
# the SFT dialogues: MR-best paths whose last reply succeeded (hot samples are often garbled)
SFT_MIN=${SFT_MIN-accuracy>=1}
TURNS=${TURNS:-2}
METHODS=${METHODS:-offline online grpo}
export OMP_NUM_THREADS=${THREADS:-1}
BASE=$ROOT/examples/world-base
"$BIN/cl-seed" --list-presets | grep -q '^world' || { echo "bench-online: this build has no offline world" >&2; exit 1; }
w=${WORK:-$(mktemp -d)}
mkdir -p "$w"
"$BIN/cl-seed" -q --preset world --split train --limit "$STATES_N" --seed 1 -o "$w/states.zst"
"$BIN/cl-seed" -q --preset world --split test --limit "$HELD_N" --seed 2 -o "$w/held.zst"
REWARD="--weights accuracy=1,interactivity=0.5,tokens=-5e-4 --tokens words --metric tokens"
# one table over the three families: success is the user's exact verdict in each
REPORT="--map '.task = \"world\"' --metric accuracy"
run() { # NAME make-arguments...: one method's rounds (online: benchmarked after every round)
    name=$1; shift
    t0=$(date +%s.%N)
    make -s -f "$ROOT/pipelines/online.mk" STATES="$w/states.zst" BASE="$BASE" BIN="$BIN" \
        TASK=math USER_MODEL=world: JUDGE=world: JUDGES="--accuracy --interactivity" REWARD="$REWARD" \
        EVAL_JUDGES="--accuracy --interactivity" EVAL_REWARD="$REWARD" REPORT_FLAGS="$REPORT" \
        ASSISTANT_MAX_TOKENS=40 MAX_INFLIGHT=256 ROLLOUT_FLAGS="--future-assistant-temperature 1" FULL=1 \
        CANDIDATES="$K" GROUP="$K" ROUND_TURNS="$TURNS" SFT_MIN="$SFT_MIN" \
        ENGINE_FLAGS="ASSISTANT_TEMPERATURE=$TEMP SAMPLES=$SAMPLES WINDOW=1 MIN_GAP=0.1" \
        EVAL_FLAGS="ASSISTANT_TEMPERATURE=0 MAX_TURNS=3 BOOTSTRAP=2000" SAVE_EVERY=1000 \
        OUT="$w/$name" CACHE="$w/$name/cache" "$@" all >"$w/$name.log" 2>&1 ||
        { tail -n 30 "$w/$name.log" >&2; return 1; }
    echo "$name $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >>"$w/wall"
}
: >"$w/wall"
FT="--lr $LR --schedule constant --batch $BATCH --grad-accum 1 --max-len 256 --keep 0"
# the methods run side by side, one thread each
pids=
for m in $METHODS; do
    case $m in
    offline) run offline ROUNDS=1 SLICES=1 STEPS=$((ROUNDS * STEPS)) ANCHOR="$ANCHOR" FT_FLAGS="$FT" & ;;
    online) run online ROUNDS="$ROUNDS" SLICES="$ROUNDS" STEPS="$STEPS" ANCHOR="$ANCHOR" FT_FLAGS="$FT" \
                HELDOUT="$w/held.zst" plot & ;;
    grpo) run grpo ROUNDS="$ROUNDS" SLICES="$ROUNDS" STEPS="$STEPS" METHOD=grpo \
              FT_FLAGS="--lr $GRPO_LR --schedule constant --batch $((BATCH * K / 2)) --grad-accum 1 --max-len 256 --keep 0" & ;;
    esac
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
last() { ls -d "$w/$1"/round-*/policy | sort -t- -k2 -n | tail -1; }
models="start=local:$BASE"
for m in $METHODS; do models="$models $m=$(cat "$(last "$m")")"; done
# the online run's cache holds the starting and its final policy's benchmark already
make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$w/held.zst" OUT="$w/cmp" BIN="$BIN" TASK=math USER_MODEL=world: \
    JUDGE=world: EVAL_JUDGES="--accuracy --interactivity" EVAL_REWARD="$REWARD" REPORT_FLAGS="$REPORT" \
    ASSISTANT_TEMPERATURE=0 ASSISTANT_MAX_TOKENS=40 MAX_TURNS=3 MAX_INFLIGHT=256 BOOTSTRAP=2000 \
    BASELINE="$(echo $METHODS | cut -d' ' -f1)" CACHE="$w/online/cache" \
    MODELS="$models" all >"$w/cmp.log" 2>&1 || { tail -n 30 "$w/cmp.log" >&2; exit 1; }
echo "### Offline DPO, online DPO and GRPO in the offline world (bench/bench-online.sh)"
echo
echo "$(zstd -dc "$w/states.zst" | wc -l) training tasks, $(zstd -dc "$w/held.zst" | wc -l) held-out ones (three families);" \
     "$K replies per state at temperature $TEMP, $SAMPLES forward sample(s) each, $TURNS turn(s);" \
     "$((ROUNDS * STEPS)) optimizer steps each (lr $LR constant, batch $BATCH, full fine-tuning;" \
     "DPO: beta 0.1 plus the MR-best dialogues' SFT loss at weight $ANCHOR; GRPO: verl-grpo," \
     "lr $GRPO_LR, batch $((BATCH * K / 2)) replies).  ACC: the user's exact verdict (%)."
echo
echo '```'
cat "$w/cmp/report.txt"
echo '```'
echo
echo "| run | rounds | wall s (whole run) | wall s per round (states to policy) | candidates + forward samples per round |"
echo "|---|---|---|---|---|"
for n in $METHODS; do
    secs= calls=
    nr=$(ls -d "$w/$n"/round-[1-9]* | wc -l)
    for k in $(seq 1 "$nr"); do
        d=$w/$n/round-$k
        # a round starts when the policy before it is written (make draws every slice first)
        secs="$secs${secs:+, }$(( $(stat -c %Y "$d/policy") - $(stat -c %Y "$w/$n/round-$((k - 1))/policy") ))"
        calls="$calls${calls:+, }$(zstd -dc "$d/engine/scored.jsonl.zst" | jq -s '[.[].candidates[] | 1 + (.futures | length)] | add')"
    done
    echo "| $n | $nr | $(awk -v n="$n" '$1 == n { print $2 }' "$w/wall") | $secs | $calls |"
done
if [ -f "$w/online/rounds.jsonl" ]; then
    echo
    echo "Online DPO per round (held-out ACC [95% CI]; round 0 = the starting policy):" \
         "$(jq -s -r 'map("\(.round): \(.metric.mean * 10 | round / 10) [\(.metric.lo * 10 | round / 10), \(.metric.hi * 10 | round / 10)]") | join("; ")' "$w/online/rounds.jsonl")"
fi
