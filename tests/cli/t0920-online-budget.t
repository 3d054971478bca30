#!/bin/sh
# pipelines/online.mk's rollout budget and validation selection in the offline world (the
# passive base as the local: policy, world: user and judges): CALLS=N trains each round on the
# longest prefix of its states whose rollout calls fit N, and on nothing else; VALID=FILE
# benchmarks every policy on the validation seeds and best/policy is the round with the highest
# validation metric, the later round on a tie; a report without the metric is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/world-lib.sh"
cl-seed -q --preset world --split train --limit 60 --seed 1 | cl-pairs -q --where '.task == "math"' -o "$S/states.zst" &&
cl-seed -q --preset world --split validation --limit 30 --seed 1 | cl-pairs -q --where '.task == "math"' -o "$S/valid.zst" ||
    { echo "Bail out! cannot draw world seeds"; exit 1; }
export OMP_NUM_THREADS=1
O="$S/o"
make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" VALID="$S/valid.zst" BASE="$BASE" BIN="$CL_BIN" OUT="$O" \
    TASK=math USER_MODEL=world:user JUDGE=world:judge MIN_GAP=0 ROUNDS=2 STEPS=1 CALLS=24 \
    ENGINE_FLAGS="SAMPLES=1 WINDOW=1 ASSISTANT_TEMPERATURE=1.5" ASSISTANT_MAX_TOKENS=40 BOOTSTRAP=100 all \
    >"$_top/run.log" 2>&1 || { sed 's/^/# /' "$_top/run.log" | tail -30; echo "Bail out! the online run failed"; exit 1; }

test_expect 'CALLS: each round keeps the longest prefix of its states whose calls fit the budget' '
    for k in 1 2; do
        d=$O/round-$k &&
        zstd -dc $d/engine/scored.jsonl.zst >scored &&
        zstd -dc $d/states.zst | jq -s -r --slurpfile s scored "
            (reduce \$s[] as \$r ({}; .[\$r.id] += ([\$r.candidates[] | 1 + (.futures | length)] | add))) as \$c |
            foreach .[] as \$x (0; . + (\$c[\$x.id] // 0); select(. <= 24) | \$x.id)" >want &&
        test -s want && diff want $d/budget/kept.ids || exit 1
    done &&
    n=$(zstd -dc $O/round-1/states.zst $O/round-2/states.zst | wc -l) &&
    test "$(cat $O/round-1/budget/kept.ids $O/round-2/budget/kept.ids | wc -l)" -lt "$n"
'
test_expect 'CALLS: the pairs and dialogues come from the kept states only, and training reads them' '
    for k in 1 2; do
        d=$O/round-$k &&
        zstd -dc $d/engine/scored.jsonl.zst | jq -c --rawfile ids $d/budget/kept.ids \
            "select(.id as \$i | \$ids | split(\"\\n\") | index([\$i]))" >want &&
        zstd -dc $d/budget/scored.jsonl.zst | cmp - want &&
        zstd -dc $d/budget/dpo.jsonl.zst | jq -r ".id | sub(\"/t[0-9]+\$\"; \"\")" | sort -u >dpo.ids &&
        zstd -dc $d/budget/sft.jsonl.zst | jq -r .id | sort -u >sft.ids &&
        sort -u $d/budget/kept.ids >kept && test -s dpo.ids &&
        test -z "$(comm -23 dpo.ids kept)" && test -z "$(comm -23 sft.ids kept)" &&
        jq -e --arg f "$d/budget/dpo.jsonl.zst" "index(\$f) != null" $d/run/args.json || exit 1
    done
'
test_expect 'VALID: every policy benchmarked; best/policy is the round of the highest validation metric' '
    for k in 0 1 2; do
        jq -r --argjson k $k "\"\(.tasks[0].runs[0].measures.metric.mean) \(\$k)\"" $O/round-$k/valid/report.json || exit 1
    done >want && diff want $O/best/valid.tsv &&
    k=$(sort -k1,1g -k2,2n want | tail -n 1 | cut -d" " -f2) && test "$(cat $O/best/round)" = "$k" &&
    cmp $O/round-$k/policy $O/best/policy
'
chart='VALID with HELDOUT: rounds.jsonl carries each round'"'"'s validation metric and held-out MR, and the chart draws them'
command -v gnuplot >/dev/null && test_expect "$chart" '
    make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" VALID="$S/valid.zst" HELDOUT="$S/valid.zst" \
        BASE="$BASE" BIN="$CL_BIN" OUT="$O" TASK=math USER_MODEL=world:user JUDGE=world:judge MIN_GAP=0 ROUNDS=2 \
        STEPS=1 CALLS=24 ASSISTANT_MAX_TOKENS=40 BOOTSTRAP=100 all plot 2>log || { cat log; false; } &&
    for k in 0 1 2; do jq -c ".tasks[0].runs[0].measures.metric | {mean, lo, hi}" $O/round-$k/valid/report.json; done >want &&
    jq -c .valid $O/rounds.jsonl | diff - want &&
    cut -f 12 $O/rounds.png.tsv | jq -s -e "length == 3 and all(.[]; type == \"number\")" &&
    cut -f 13 $O/rounds.png.tsv | jq -s -e "length == 3 and all(.[]; type == \"number\")" &&
    test "$(head -c 4 $O/rounds.png | tail -c 3)" = PNG
' || test_skip "$chart" 'gnuplot is not installed (apt-get install gnuplot-nox)'
# rewrite round K's validation metric to M and select again
revalid() {
    jq -c ".tasks[0].runs[0].measures.metric.mean = $2" "$O/round-$1/valid/report.json" >r.json &&
    mv r.json "$O/round-$1/valid/report.json" && rm -rf "$O/best" &&
    make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" VALID="$S/valid.zst" BASE="$BASE" BIN="$CL_BIN" \
        OUT="$O" ROUNDS=2 CALLS=24 "$O/best/policy"
}
test_expect 'VALID: a round that falls back is not the result; on a tie the later round is' '
    revalid 0 10 && revalid 1 60 && revalid 2 20 && test "$(cat $O/best/round)" = 1 &&
    cmp $O/round-1/policy $O/best/policy &&
    revalid 2 60 && test "$(cat $O/best/round)" = 2 && cmp $O/round-2/policy $O/best/policy
'
test_expect 'VALID: a report without the task metric is refused, and no best policy is written' '
    ! revalid 1 null 2>err && grep -q "no validation metric" err && ! test -e $O/best/policy
'
test_done
