#!/bin/sh
# pipelines/online.mk in the offline world: the shipped passive base (examples/world-base) as
# the local: policy, world:user and world:judge as the simulator and the judges, on world math
# tasks: one online DPO round end to end with the per-round benchmark and held-out MR, and a
# second make that has nothing left to do.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/world-lib.sh"
cl-seed -q --preset world --split train --limit 60 --seed 1 | cl-pairs -q --where '.task == "math"' --shard 0/2 -o "$S/states.zst" &&
cl-seed -q --preset world --split test --limit 40 --seed 2 | cl-pairs -q --where '.task == "math"' --shard 0/2 -o "$S/held.zst" ||
    { echo "Bail out! cannot draw world seeds"; exit 1; }
export OMP_NUM_THREADS=1
online() {
    make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" HELDOUT="$S/held.zst" BASE="$BASE" BIN="$CL_BIN" \
        TASK=math USER_MODEL=world:user JUDGE=world:judge MIN_GAP=0 ROUNDS=1 STEPS=2 BOOTSTRAP=200 "$@"
}

test_expect 'one online DPO round in the world: the passive base samples, world judges rank, DPO trains, both benchmarked, with their held-out MR' '
    online OUT=o all 2>log || { cat log; false; } &&
    zstd -dc o/round-1/engine/scored.jsonl.zst >scored &&
    jq -s -e --arg p "local:$BASE" "length > 0 and all(.[].candidates[]; .source == \$p and (.mr.mean | type) == \"number\")" scored &&
    jq -s -e "length == 2 and all(.[]; has(\"dpo_loss\"))" o/round-1/run/metrics.jsonl &&
    test "$(cat o/round-1/policy)" = "local:$BASE+adapter=$PWD/o/round-1/run/final" &&
    n=$(zstd -dc "$S/held.zst" | wc -l) &&
    jq -s -e --argjson n $n "map(.round) == [0, 1] and all(.[]; .records == \$n and .failed == 0 and .metric_name == \"accuracy\"
        and .metric.lo <= .metric.mean and .metric.mean <= .metric.hi)" o/rounds.jsonl &&
    echo "# each policy'"'"'s MR on the held-out first turns: its own candidates, their mean in rounds.jsonl" &&
    for k in 0 1; do
        zstd -dc o/round-$k/heldout-mr/scored.jsonl.zst >h$k &&
        jq -s -e --argjson n $n --arg p "$(cat o/round-$k/policy)" "length == \$n and all(.[]; .turn == 0 and
            all(.candidates[]; .source == \$p and (.mr.mean | type) == \"number\"))" h$k &&
        jq -s "[.[].candidates[].mr.mean] | add / length" h$k >want &&
        jq -s ".[$k].mr_heldout" o/rounds.jsonl | cmp - want || exit 1
    done &&
    ! cmp -s h0 h1
'
test_expect 'HELDOUT_MR=0: no held-out engine runs and mr_heldout is null' '
    online OUT=z STEPS=1 HELDOUT_MR=0 all 2>log || { cat log; false; } &&
    ! test -e z/round-0/heldout-mr && ! test -e z/round-1/heldout-mr &&
    jq -s -e "length == 2 and all(.[]; .mr_heldout == null)" z/rounds.jsonl
'
test_expect 'a second make of the finished round has nothing to do: no sampling, no training' '
    online OUT=o all 2>log && online OUT=o all 2>log2 || { cat log log2; false; } &&
    ! grep -q "cl-rollout\|cl-finetune" log2
'
test_expect 'ANCHOR with no dialogue left by SFT_MIN: the round trains DPO alone and says so' '
    online OUT=n FULL=1 ANCHOR=2 SFT_MIN="accuracy>=2" JUDGES="--accuracy --interactivity" rounds 2>log || { cat log; false; } &&
    test "$(zstd -dc n/round-1/engine/sft.jsonl.zst | wc -l)" = 0 &&
    grep -q "online.mk: round 1 has no SFT dialogue: DPO without the anchor" log &&
    jq -e "index(\"--anchor\") == null and index(\"--full\") != null" n/round-1/run/args.json &&
    jq -s -e "length == 2 and all(.[]; has(\"dpo_loss\") and (has(\"anchor_loss\") | not))" n/round-1/run/metrics.jsonl
'
test_done
