#!/bin/sh
# Beyond one machine, the GNU parallel form of collabllm(7) run locally: one collab.mk per shard
# (SHARD=I), then the merge; the result equals a single run's.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
command -v parallel >/dev/null || skip_all "GNU parallel is not installed (scripts/install-deps installs it)"
W="$FIXTURES/pipelines"

# The same run whatever the shards: 6 seeds, the scripted math world, replies that depend only
# on the request (--deterministic).
run() {
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        MODEL=openai:m SAMPLES=2 MAX_TURNS=4 "$@"
}
# Latencies are measured, so they differ between two runs; everything else must not.
norm() { zstd -dc "$1" | jq -cS 'del(.. | .latency_s?)' | sort; }

test_expect 'three shards by GNU parallel, merged, give the pairs, dialogues and turns of one run' '
    mock_start --deterministic --script "$W/math-world.jsonl" &&
    cl-seed -q --preset math --limit 6 "$ROOT/examples/math.jsonl" >seeds.zst &&
    run OUT=single SHARDS=3 2>/dev/null && n1=$(mock_count) &&
    parallel --halt now,fail=1 -j3 make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst BIN="$CL_BIN" \
        API_BASE="$MOCK_URL" MODEL=openai:m SAMPLES=2 MAX_TURNS=4 OUT=par SHARDS=3 SHARD={} ::: 0 1 2 2>/dev/null &&
    for i in 0 1 2; do test -s par/s$i/t0/scored.zst || exit 1; done && ! test -e par/dpo.jsonl.zst &&
    test "$(mock_count)" = $((2 * n1)) &&
    run OUT=par SHARDS=3 2>/dev/null && test "$(mock_count)" = $((2 * n1)) &&
    cmp single/dpo.jsonl.zst par/dpo.jsonl.zst && cmp single/sft.jsonl.zst par/sft.jsonl.zst &&
    for f in conversations scored; do
        norm single/$f.jsonl.zst >a && norm par/$f.jsonl.zst >b && test -s a && cmp a b || exit 1
    done &&
    run OUT=one SHARDS=1 2>/dev/null &&
    norm one/conversations.jsonl.zst >c && norm par/conversations.jsonl.zst >d && cmp c d &&
    test "$(zstd -dc par/conversations.jsonl.zst | wc -l)" = 6
'
test_expect 'SHARD=I asked for the whole run says how to merge instead' '
    : >seeds.zst &&
    { make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst OUT=x SHARDS=2 SHARD=1 all 2>err; test $? != 0; } &&
    grep -q "SHARD=1 runs one shard (target shard); merge with the same command without SHARD" err
'
test_done
