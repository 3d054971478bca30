#!/bin/sh
# The comparison of bench-online.sh over several seeds: one run's interval says how sure the
# benchmark's 210 tasks make us of that run; a new seed is another draw of the sampling and the
# training order, so whether online DPO beats offline DPO *as a method* is a question over seeds.
#   sh bench/online-seeds.sh WORK...      (each WORK: a finished `WORK=... bench-online.sh` run)
# Prints two cl-judge --report tables, every method against offline (the first method of
# bench-online.sh's METHODS must be offline):
#   seeds   one record per seed and method, its held-out means: the bootstrap resamples the
#           seeds (the unit of a new training run; the tasks held fixed);
#   pooled  every held-out conversation of every seed, paired by seed and task: the bootstrap
#           resamples those pairs (the seeds held fixed).
# Env: BIN (programs), BOOTSTRAP (resamples, 2000).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
BOOTSTRAP=${BOOTSTRAP:-2000}
[ $# -ge 2 ] || { echo "usage: online-seeds.sh WORK WORK..." >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-online-seeds.XXXXXX")
trap 'rm -rf "$T"' EXIT
runs=
for w in "$@"; do
    [ -f "$w/cmp/report.json" ] || { echo "online-seeds: $w/cmp/report.json: no finished bench-online run" >&2; exit 66; }
    [ "$(jq -r .baseline "$w/cmp/report.json")" = offline ] ||
        { echo "online-seeds: $w/cmp/report.json: baseline is not offline" >&2; exit 65; }
    seed=$(basename "$w")
    # per run: the seed's means as one record (the report shows accuracy and ITR x100 and
    # tokens in thousands, so the record carries them back in the scores' units)
    jq -c --arg seed "$seed" --arg scale "$(jq -r .itr_scale "$w/cmp/report.json")" \
        --arg counter "$(jq -r .token_counter "$w/cmp/report.json")" '.tasks[0].runs[] | select(.run | endswith("-last") | not)
        | {run, rec: {id: $seed, task: "world", judge: {interactivity: {scale: $scale}},
           metric_info: {tokens: {method: $counter}},
           scores: {accuracy: (.measures.metric.mean / 100), tokens: (.measures.tokens.mean * 1000),
                    interactivity: (.measures.itr.mean / 100)}}}' "$w/cmp/report.json" |
    while read -r line; do
        run=$(echo "$line" | jq -r .run)
        echo "$line" | jq -c .rec >>"$T/seeds-$run.jsonl"
        zstd -dc "$w/cmp/$run/scored.jsonl.zst" | jq -c --arg seed "$seed" '.id = $seed + "/" + .id' >>"$T/pooled-$run.jsonl"
    done
    r=$(jq -r '[.tasks[0].runs[].run | select(endswith("-last") | not)] | join(" ")' "$w/cmp/report.json")
    [ -z "$runs" ] || [ "$runs" = "$r" ] || { echo "online-seeds: $w: runs '$r', others '$runs'" >&2; exit 65; }
    runs=$r
done
report() { # KIND
    args=
    for r in $runs; do args="$args --label $r $T/$1-$r.jsonl"; done
    # shellcheck disable=SC2086
    "$BIN/cl-judge" --report --seed 0 --bootstrap "$BOOTSTRAP" --baseline offline --metric accuracy \
        --map '.task = "world"' $args
}
echo "Seeds as the unit ($# seeds; one record per seed and method: its held-out means):"
echo
echo '```'
report seeds
echo '```'
echo
echo "Every held-out conversation of every seed, paired by seed and task ($# x $(zstd -dc "$1/held.zst" | wc -l) pairs):"
echo
echo '```'
report pooled
echo '```'
