#!/bin/sh
# pipelines/demo.sh — `make demo`: the whole CollabLLM loop, offline, on a tiny model that
# learns to ask (design/offline-world.md).
#
# The world: tasks whose requests leave out details only the user knows (a note's name and
# day, a function's name and number, a word problem's two numbers; cl-seed --preset world).
# The user simulator and the judges are exact programs (world:); the assistant is a tiny Llama
# (0.9M parameters, examples/world-base) pre-trained on world dialogues in which the assistant
# mostly guesses the usual values, like the paper's passive base models; it runs in the
# process (local:).  The demo runs the paper's data engine (collab.mk: candidates, forward
# samples, judges, MR, DPO pairs and the MR-best dialogues), fine-tunes the base the paper's
# offline way, SFT on the MR-best dialogues then DPO on the MR pairs (with an anchor loss on
# the same dialogues, which keeps a model this small fluent), and benchmarks base and
# fine-tuned model on held-out tasks (eval.mk), greedy, with 95% bootstrap intervals.
#
# The candidates: K (default 16) replies of the policy itself, sampled hot, and EXTRA (default
# 0) from the scripted world:careful assistant, which asks about every missing detail once and
# then also plays the forward samples.  The passive base asks in about 3% of its samples, so
# one round of its own candidates gains about +10 points; the default's two rounds (round 2
# samples round 1's SFT model, at TEMP2=1) about +33, the policy alone.  EXTRA=1 K=6 adds the
# careful candidate (off-policy data: legitimate for offline SFT/DPO, and MR still decides,
# state by state, whether it beats the policy's own replies): about +46 (BENCHMARKS.md).
#
# A model that learned to ask should still answer when nothing is missing, and MR ranks that
# so (answer 1.5, needless question 1.0, wrong answer 0.5), but only 15% of the world's tasks
# give every detail and DPO's pairs there rarely pit the answer against a needless question, so
# DPO's many "question beats guess" pairs teach asking everywhere.  Hence ROUNDS (default 2):
# round 2 collects with round 1's SFT model (the offline recipe iterated), which at times asks
# where nothing is missing, so that its DPO pairs pit the answer against that question; FULL
# (default 30): that share of the training tasks give every detail (the held-out tasks keep
# the world's mix); and SFT_MIN (default accuracy>=0.5 interactivity>=0.5, the official
# recipe's floor on the SFT dialogues, here on both terms of R*): SFT learns only from MR-best
# dialogues that succeeded without a guess or a needless question, not from lucky guesses.
#
#   BIN=bin OUT=demo-out sh pipelines/demo.sh
# Knobs (environment): BASE (model dir), TRAIN (training seeds), FULL (their share, in %,
# that give every detail; empty = the world's own), TEST (held-out seeds), ROUNDS, K and TEMP
# (policy candidates and their temperature in round 1), K2 and TEMP2 (in later rounds), EXTRA
# and FUTURE (extra candidates, and the assistant of the forward samples, which also plays
# them; default world:careful with EXTRA, else the policy), SFT_MIN (floors on the SFT
# dialogues' metrics), SFT_STEPS and SFT_LR, STEPS (DPO steps; 0 = SFT only), LR, BETA,
# ANCHOR_W, RPO.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${OUT:-demo-out}
BASE=${BASE:-$ROOT/examples/world-base}
TRAIN=${TRAIN:-240}
TEST=${TEST:-210}
STEPS=${STEPS:-35}
SFT_STEPS=${SFT_STEPS:-60}
SFT_LR=${SFT_LR:-1e-3}
K=${K:-16}
TEMP=${TEMP:-1.5}
LR=${LR:-5e-4}
EXTRA=${EXTRA:-0}
FUTURE=${FUTURE-$(if [ "$EXTRA" -gt 0 ]; then echo world:careful; fi)}
ROUNDS=${ROUNDS:-2}
K2=${K2:-$K}
TEMP2=${TEMP2:-1}
FULL=${FULL-30}
SFT_MIN=${SFT_MIN-accuracy>=0.5 interactivity>=0.5}
ANCHOR_W=${ANCHOR_W:-3}
RPO=${RPO:-0}
BETA=${BETA:-0.1}
TASKS="document code math"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BASE=$(cd "$BASE" && pwd)
PATH=$BIN:$PATH
export PATH
# One thread per process: at these sizes parallel processes beat threads.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_NUM_THREADS
start=$(date +%s)
say() { printf '\n== %s\n' "$*" >&2; }
# parallel FN: FN for every family, as background jobs; fails when one failed (its log says why).
parallel() {
    pids=
    for t in $TASKS; do "$1" "$t" & pids="$pids $!"; done
    bad=0
    for p in $pids; do wait "$p" || bad=1; done
    if [ $bad = 1 ]; then tail -n 5 "$OUT"/*.log >&2; echo "demo: the $1 step failed" >&2; exit 1; fi
}

# The world's judges and metrics per family: accuracy is the exact success (the user's
# verdict) in every family; documents add char-BLEU, code the sandboxed unittest.
judges() {
    case $1 in
    document) echo "--extract document --accuracy --interactivity" ;;
    code)     echo "--extract code --accuracy --interactivity" ;;
    math)     echo "--accuracy --interactivity" ;;
    esac
}
# R* and MR alike for every family: exact success 1, interactivity 0.5, tokens -0.5 per
# thousand (the v2 weights of math, cl-reward(1)).
reward() {
    case $1 in
    document) m=bleu,tokens ;;
    code)     m=pass_rate,tokens ;;
    math)     m=tokens ;;
    esac
    echo "--weights accuracy=1,interactivity=0.5,tokens=-5e-4 --tokens words --metric $m"
}

say "seeds: cl-seed --preset world ($TRAIN training tasks, $TEST held-out ones)"
# The training tasks: the first of the world's training split, FULL of every 100 of them (when
# set) tasks whose request already gives both details, so that MR shows often enough that
# answering beats asking there (the natural share is 15%; the held-out tasks keep it).
if [ -n "$FULL" ]; then
    nfull=$((TRAIN * FULL / 100))
    cl-seed -q --preset world --split train --limit $((TRAIN * 8)) -o "$OUT/pool.jsonl.zst"
    { cl-pairs -q -Z --where '.metadata.world.given | length == 2' "$OUT/pool.jsonl.zst" | head -n "$nfull"
      cl-pairs -q -Z --where '.metadata.world.given | length < 2' "$OUT/pool.jsonl.zst" | head -n $((TRAIN - nfull)); } |
        cl-pairs -q -o "$OUT/train.jsonl.zst"
    if [ "$(zstd -dc "$OUT/train.jsonl.zst" | wc -l)" -ne "$TRAIN" ]; then
        echo "demo: the world has too few training tasks for TRAIN=$TRAIN with FULL=$FULL" >&2
        exit 1
    fi
else
    cl-seed -q --preset world --split train --limit "$TRAIN" -o "$OUT/train.jsonl.zst"
fi
cl-seed -q --preset world --split test --limit "$TEST" -o "$OUT/test.jsonl.zst"
for t in $TASKS; do
    cl-pairs -q --where ".task == \"$t\"" -o "$OUT/train-$t.jsonl.zst" "$OUT/train.jsonl.zst"
    cl-pairs -q --where ".task == \"$t\"" -o "$OUT/test-$t.jsonl.zst" "$OUT/test.jsonl.zst"
done
zstd -dc "$OUT/train.jsonl.zst" | head -1 | jq '{id, task, prompt, completion, world: .metadata.world}' >&2

# One round: the data engine (collab.mk per family) with POLICY as the assistant, then SFT of
# POLICY on the MR-best dialogues; the last round adds DPO on the MR pairs.  Round 1's files are
# collab/, sft.jsonl.zst, dpo.jsonl.zst and sft/; round R's collabR/, sftR.jsonl.zst, ... The
# DPO run is dpo/ whichever round is last.
# MR needs only the exact success, interactivity and tokens: the engine skips BLEU and the
# sandbox.  Policy candidates are sampled hot (TEMP; TEMP2 in later rounds) so that the rare
# question of a passive model shows up among them; the forward samples that score every
# candidate are played by the future assistant (FUTURE, default the policy) at temperature 1.
# sources: the policy's candidates, then EXTRA from the future-assistant role (FUTURE).
sources() {
    i=0; while [ $i -lt "$1" ]; do printf -- '--candidate assistant '; i=$((i + 1)); done
    i=0; while [ $i -lt "$EXTRA" ]; do printf -- '--candidate future-assistant '; i=$((i + 1)); done
}
engine() {
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS="$OUT/train-$1.jsonl.zst" OUT="$OUT/collab$SUF/$1" BIN="$BIN" \
        TASK=$1 ASSISTANT="local:$POLICY" USER_MODEL=world: JUDGE=world: JUDGES="--accuracy --interactivity" \
        REWARD="$(reward math)" CANDIDATES=$((RK + EXTRA)) SAMPLES=2 WINDOW=1 MAX_TURNS=2 PROACT_RATIO=0 SYSTEM_PROMPT=0 \
        MIN_GAP=0.1 SFT_MIN="$SFT_MIN" ASSISTANT_TEMPERATURE=$RTEMP ASSISTANT_MAX_TOKENS=40 MAX_INFLIGHT=256 \
        FUTURE_ASSISTANT="${FUTURE:-local:$POLICY}" ROLLOUT_FLAGS="$(sources "$RK") --future-assistant-temperature 1" \
        all 2>"$OUT/collab$SUF-$1.log"
}
rm -rf "$OUT/sft" "$OUT/dpo"
POLICY=$BASE
r=1
while [ $r -le "$ROUNDS" ]; do
    SUF=$(if [ $r -gt 1 ]; then echo $r; fi)
    RK=$(if [ $r -gt 1 ]; then echo "$K2"; else echo "$K"; fi)
    RTEMP=$(if [ $r -gt 1 ]; then echo "$TEMP2"; else echo "$TEMP"; fi)
    extra=$(if [ "$EXTRA" -gt 0 ]; then echo " + $EXTRA from $FUTURE"; fi)
    say "round $r, data engine: make -f pipelines/collab.mk per family, policy" \
        "$(basename "$(dirname "$POLICY")")/$(basename "$POLICY") ($RK candidates at temperature $RTEMP$extra x 2 forward samples per turn)"
    parallel engine
    cat "$OUT"/collab$SUF/*/dpo.jsonl.zst > "$OUT/dpo$SUF.jsonl.zst"
    cat "$OUT"/collab$SUF/*/sft.jsonl.zst > "$OUT/sft$SUF.jsonl.zst"
    printf 'DPO pairs: %s; SFT dialogues (MR-best paths that pass SFT_MIN): %s\n' \
        "$(zstd -dc "$OUT/dpo$SUF.jsonl.zst" | wc -l)" "$(zstd -dc "$OUT/sft$SUF.jsonl.zst" | wc -l)" >&2
    zstd -dc "$OUT/dpo$SUF.jsonl.zst" | head -1 |
        jq '{prompt: [.prompt[].content], chosen: .chosen[0].content, rejected: .rejected[0].content, score_chosen, score_rejected}' >&2

    if ! zstd -dc "$OUT/sft$SUF.jsonl.zst" | grep -q .; then
        echo "demo: round $r: no MR-best dialogue passes SFT_MIN='$SFT_MIN' (more TRAIN tasks or K candidates, or SFT_MIN=)" >&2
        exit 1
    fi
    say "round $r, fine-tuning: cl-finetune SFT on the MR-best dialogues ($SFT_STEPS steps)"
    rm -rf "$OUT/sft$SUF"
    cl-finetune -q --model "$POLICY" --sft "$OUT/sft$SUF.jsonl.zst" --full --lr "$SFT_LR" --schedule constant \
        --max-steps "$SFT_STEPS" --batch 8 --max-len 256 --seed 0 --log-every 10 --keep 0 --run "$OUT/sft$SUF"
    POLICY=$OUT/sft$SUF/final
    r=$((r + 1))
done
FINAL=$POLICY
if [ "$STEPS" -gt 0 ]; then
    say "fine-tuning: cl-finetune DPO on the last round's MR pairs, its SFT dialogues as anchor ($STEPS steps)"
    cl-finetune -q --model "$POLICY" --dpo "$OUT/dpo$SUF.jsonl.zst" --anchor "$OUT/sft$SUF.jsonl.zst" \
        --anchor-weight "$ANCHOR_W" --full --beta "$BETA" --rpo-alpha "$RPO" --lr "$LR" --schedule constant \
        --max-steps "$STEPS" --batch 8 --max-len 256 --seed 0 --log-every 5 --keep 0 --run "$OUT/dpo"
    jq -c 'select(.loss != null) | {step, loss, "rewards/accuracies", "rewards/margins"}' "$OUT/dpo/metrics.jsonl" |
        tail -3 >&2
    FINAL=$OUT/dpo/final
fi

say "benchmark: make -f pipelines/eval.mk per family, greedy, base and fine-tuned model"
bench() {
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$OUT/test-$1.jsonl.zst" OUT="$OUT/eval/$1" BIN="$BIN" TASK=$1 \
        MODELS="base=local:$BASE collab=local:$FINAL" USER_MODEL=world: JUDGE=world: \
        EVAL_JUDGES="$(judges $1)" EVAL_REWARD="$(reward $1)" ASSISTANT_TEMPERATURE=0 ASSISTANT_MAX_TOKENS=40 \
        MAX_TURNS=3 MAX_INFLIGHT=256 BOOTSTRAP=2000 all 2>"$OUT/eval-$1.log"
}
parallel bench

# One table over the three families: the scored conversations relabelled task "world", the
# exact success as the task metric; then the table per family.
for m in base collab; do cat "$OUT"/eval/*/$m/scored.jsonl.zst > "$OUT/$m.scored.jsonl.zst"; done
report() {
    cl-judge -q --report --map '.task = "world"' --metric accuracy --baseline base --bootstrap 2000 \
        --label base --label collab "$@" "$OUT/base.scored.jsonl.zst" "$OUT/collab.scored.jsonl.zst"
}
report --format table > "$OUT/report.txt"
report --format json > "$OUT/report.json"
if command -v gnuplot >/dev/null 2>&1; then report --format json --plot "$OUT/report.png" >/dev/null; fi
# first replies that ask, and well-formed replies (the user's verdicts name the others)
stats() {
    zstd -dc "$1" | jq -s '(map(select(.metadata.world.given | length == 2)) |
          {n: length, asks: map(select(.messages[1].content // "" | test("\\?"))) | length}) as $full |
        {first_asks: (map(.messages[1].content // "" | test("\\?")) | map(if . then 1 else 0 end) | add / length),
        asks_when_nothing_missing: "\($full.asks)/\($full.n)",
        well_formed: ([.[].messages[] | select(.role == "user") | .content |
                       test("^That is not what I asked for|^I do not understand")] | map(if . then 0 else 1 end) | add / length)}'
}
end=$(date +%s)
cat <<EOF

The offline world: $(zstd -dc "$OUT/test.jsonl.zst" | wc -l) held-out tasks (documents, code, math) whose first request
leaves out details only the user knows.  The simulated user (a program) answers questions,
thanks a right answer and gives up after a wrong one; guessing the usual values is right only
sometimes.  base = the passive tiny model (examples/world-base), greedy; collab = the same
model after $ROUNDS round(s) of the paper's offline recipe on $TRAIN training tasks$(if [ -n "$FULL" ]; then echo " ($FULL% of
them give every detail)"; fi)$(if [ "$ROUNDS" -gt 1 ]; then echo ", iterated (each round
collects its data with the model the round before fine-tuned)"; fi): per state MR ranked $K of the
policy's own replies$(if [ "$ROUNDS" -gt 1 ]; then echo " ($K2 in later rounds)"; fi)$(if [ "$EXTRA" -gt 0 ]; then echo " and $EXTRA of the scripted careful assistant
($FUTURE, off-policy data)"; fi); SFT on the MR-best dialogues$(if [ -n "$SFT_MIN" ]; then echo " that pass $SFT_MIN"; fi)
($(zstd -dc "$OUT/sft$SUF.jsonl.zst" | wc -l) in the last round, $SFT_STEPS steps a round), then DPO on the last round's $(zstd -dc "$OUT/dpo$SUF.jsonl.zst" | wc -l) MR pairs
($STEPS steps, anchor loss).
world ACC: exact task success (%); Tok(k): words per conversation (thousands); ITR:
interactivity (%), 1 when the model asked for every missing detail before answering and
nothing needless.  [lo, hi]: 95% bootstrap interval; "Paired diff": collab - base on the
same tasks: a gain whose interval excludes 0 is the claim.  Below the table: first_asks,
the share of conversations whose first reply is a question; asks_when_nothing_missing, of
the tasks whose request already gives every detail, those where it still asked first (a
needless question: MR ranks answering above it); well_formed, the share of replies the user
could read as an answer or a question.

EOF
cat "$OUT/report.txt"
for m in base collab; do printf '%-7s %s\n' "$m" "$(stats "$OUT/$m.scored.jsonl.zst" | jq -c .)"; done
printf '\nper family:\n'
for t in $TASKS; do cat "$OUT/eval/$t/report.txt"; done
printf '\nwhole loop: %d s; every intermediate file is under %s (zstdcat FILE | jq)\n' $((end - start)) "$OUT"
if [ -f "$OUT/report.png" ]; then echo "chart: $OUT/report.png"; fi
