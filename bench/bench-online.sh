#!/bin/sh
# Offline DPO, online DPO and GRPO in the offline world, on the same rollout calls and the same
# optimizer steps, with pipelines/online.mk.  The shipped passive base (examples/world-base) is
# the local: policy, world: the simulated user and the judges, world tasks of the three families
# the states.  Every method samples its candidates from a policy (K per state, hot) and the
# forward samples that score them from the same policy; MR = success + 0.5 interactivity - 0.5
# per thousand words (make demo's weights).
#   offline: ROUNDS=1 SLICES=1: one engine pass over every state with the starting policy, then
#            ROUNDS*STEPS steps on the data of ROUNDS*CALLS rollout calls;
#   online:  ROUNDS rounds over 1/ROUNDS of the states each, sampled by the current policy,
#            STEPS steps each on the data of CALLS rollout calls, weights and AdamW state carried
#            over;
#   grpo:    as online, GRPO on the K candidates of each state (their MR the rewards).
# DPO is make demo's recipe in one run: full fine-tuning, DPO on the MR pairs plus the SFT loss of
# the MR-best dialogues (--anchor, weight ANCHOR) in every step.  Each method's result is its
# policy with the best success on VALID_N validation tasks (cl-seed --split validation; the
# starting policy and every round are candidates: online.mk VALID), never chosen on the
# held-out tasks.  eval.mk then benchmarks the starting policy and the three results on them, greedy (task success, ITR, words;
# 95% bootstrap intervals; paired differences against offline DPO), and the per-round wall
# times and held-out metrics come from each run's rounds.jsonl (the chart: online/rounds.png).
# The three runs go side by side, one thread each; so the wall times are those of a shared machine.
# Needs the offline world (cl-seed --preset world).  Env: BIN, STATES_N (training tasks, 240),
# HELD_N (held-out tasks, 210), VALID_N (validation tasks, 120; 0 = the last round is the
# result), CALLS (rollout calls a round trains on, 1200), ROUNDS (3), STEPS (per round, 20), K (6), TEMP (1.5), SAMPLES
# (forward samples per candidate, 1), TURNS (assistant turns of a state, 2), LR (3e-4), GRPO_LR
# (LR), GROUP_GAP (GRPO's groups whose MR spread less are left out, 0.1), GRPO_FLAGS (more
# cl-finetune flags for the GRPO runs, e.g. --adv-norm mean), SFT_MIN (accuracy>=1),
# BATCH (8), ANCHOR (3), METHODS (offline online grpo), THREADS (1), WORK (a
# directory to keep).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/.." && pwd)
BIN=${BIN:-$ROOT/bin}
STATES_N=${STATES_N:-240}
HELD_N=${HELD_N:-210}
VALID_N=${VALID_N:-120}
CALLS=${CALLS:-1200}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-20}
K=${K:-6}
TEMP=${TEMP:-1.5}
LR=${LR:-3e-4}
GRPO_LR=${GRPO_LR:-$LR}
GRPO_FLAGS=${GRPO_FLAGS:-}
GROUP_GAP=${GROUP_GAP:-0.1}
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
seeds() { # FILE cl-seed-arguments: replaced only when it changes, so a rerun in WORK resumes
    f=$1; shift
    "$BIN/cl-seed" -q --preset world "$@" -o "$f.new" && { cmp -s "$f.new" "$f" && rm "$f.new" || mv "$f.new" "$f"; }
}
seeds "$w/states.zst" --split train --limit "$STATES_N" --seed 1
seeds "$w/held.zst" --split test --limit "$HELD_N" --seed 2
[ "$VALID_N" = 0 ] || seeds "$w/valid.zst" --split validation --limit "$VALID_N" --seed 1
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
        $(test "$VALID_N" = 0 || echo VALID="$w/valid.zst") \
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
    offline) run offline ROUNDS=1 SLICES=1 STEPS=$((ROUNDS * STEPS)) CALLS=$((ROUNDS * CALLS)) ANCHOR="$ANCHOR" FT_FLAGS="$FT" & ;;
    online) run online ROUNDS="$ROUNDS" SLICES="$ROUNDS" STEPS="$STEPS" CALLS="$CALLS" ANCHOR="$ANCHOR" FT_FLAGS="$FT" \
                HELDOUT="$w/held.zst" plot & ;;
    grpo) run grpo ROUNDS="$ROUNDS" SLICES="$ROUNDS" STEPS="$STEPS" CALLS="$CALLS" METHOD=grpo GROUP_GAP="$GROUP_GAP" \
              FT_FLAGS="--lr $GRPO_LR --schedule constant --batch $((BATCH * K / 2)) --grad-accum 1 --max-len 256 --keep 0 $GRPO_FLAGS" & ;;
    esac
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
# a method's result: its policy selected on the validation tasks, else its last round; NAME-last
# is the last round where the selection picked an earlier one
last() { ls -d "$w/$1"/round-*/policy | sort -t- -k2 -n | tail -1; }
models="start=local:$BASE" lasts=
for m in $METHODS; do
    if [ -f "$w/$m/best/policy" ]; then
        models="$models $m=$(cat "$w/$m/best/policy")"
        cmp -s "$w/$m/best/policy" "$(last "$m")" || lasts="$lasts $m-last=$(cat "$(last "$m")")"
    else
        models="$models $m=$(cat "$(last "$m")")"
    fi
done
# cmp: every result against the first method's; cmp-last: against the first method's last round
# (the online run's cache holds the starting and its final policy's benchmark already)
compare() { # OUT BASELINE MODELS
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$w/held.zst" OUT="$w/$1" BIN="$BIN" TASK=math USER_MODEL=world: \
        JUDGE=world: EVAL_JUDGES="--accuracy --interactivity" EVAL_REWARD="$REWARD" REPORT_FLAGS="$REPORT" \
        ASSISTANT_TEMPERATURE=0 ASSISTANT_MAX_TOKENS=40 MAX_TURNS=3 MAX_INFLIGHT=256 BOOTSTRAP=2000 \
        BASELINE="$2" CACHE="$w/online/cache" MODELS="$3" all >"$w/$1.log" 2>&1 || { tail -n 30 "$w/$1.log" >&2; exit 1; }
}
first=$(echo $METHODS | cut -d' ' -f1)
compare cmp "$first" "$models$lasts"
case $lasts in *" $first-last="*) compare cmp-last "$first-last" "$models$lasts" ;; esac
echo "### Offline DPO, online DPO and GRPO in the offline world (bench/bench-online.sh)"
echo
echo "$(zstd -dc "$w/states.zst" | wc -l) training tasks, $(zstd -dc "$w/held.zst" | wc -l) held-out ones (three families);" \
     "$K replies per state at temperature $TEMP, $SAMPLES forward sample(s) each, $TURNS turn(s);" \
     "$((ROUNDS * CALLS)) rollout calls of training data each;" \
     "$((ROUNDS * STEPS)) optimizer steps each (lr $LR constant, batch $BATCH, full fine-tuning;" \
     "DPO: beta 0.1 plus the MR-best dialogues' SFT loss at weight $ANCHOR; GRPO: verl-grpo," \
     "lr $GRPO_LR, batch $((BATCH * K / 2)) replies).  ACC: the user's exact verdict (%)."
echo
echo '```'
cat "$w/cmp/report.txt"
echo '```'
if [ -f "$w/cmp-last/report.txt" ]; then
    echo
    echo "Against $first's last round (not selected on the validation tasks):"
    echo
    echo '```'
    grep "^Paired diff" "$w/cmp-last/report.txt"
    echo '```'
fi
echo
echo "| run | rounds | result (validation success % per round) | rollout calls trained on (made) per round | optimizer steps | wall s (whole run) | wall s per round (states to policy) |"
echo "|---|---|---|---|---|---|---|"
for n in $METHODS; do
    secs= calls= steps=0
    nr=$(ls -d "$w/$n"/round-[1-9]* | wc -l)
    for k in $(seq 1 "$nr"); do
        d=$w/$n/round-$k
        # a round starts when the policy before it is written (make draws every slice first)
        secs="$secs${secs:+, }$(( $(stat -c %Y "$d/policy") - $(stat -c %Y "$w/$n/round-$((k - 1))/policy") ))"
        used=$(awk -F '\t' 'NR == FNR { k[$1] = 1; next } k[$1] { s += $2 } END { print s + 0 }' \
            "$d/budget/kept.ids" "$d/budget/calls.tsv")
        calls="$calls${calls:+, }$used ($(awk -F '\t' '{ s += $2 } END { print s + 0 }' "$d/budget/calls.tsv"))"
        steps=$((steps + $(wc -l <"$d/run/metrics.jsonl")))
    done
    result="round $nr"
    [ -f "$w/$n/best/round" ] &&
        result="round $(cat "$w/$n/best/round") ($(awk '{ printf "%s%.1f", (NR > 1 ? ", " : ""), $1 }' "$w/$n/best/valid.tsv"))"
    echo "| $n | $nr | $result | $calls | $steps | $(awk -v n="$n" '$1 == n { print $2 }' "$w/wall") | $secs |"
done
if [ -f "$w/online/rounds.jsonl" ]; then
    echo
    echo "Online DPO per round (held-out ACC [95% CI]; round 0 = the starting policy):" \
         "$(jq -s -r 'map("\(.round): \(.metric.mean * 10 | round / 10) [\(.metric.lo * 10 | round / 10), \(.metric.hi * 10 | round / 10)]") | join("; ")' "$w/online/rounds.jsonl")"
fi
