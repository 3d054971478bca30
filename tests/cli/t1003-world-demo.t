#!/bin/sh
# `make demo` (pipelines/demo.sh), the whole loop on the offline world, here on a handful of
# tasks and a few steps: every stage runs and writes records that zstdcat | jq reads.  The claim
# itself (the gain's interval above zero, on 210 held-out tasks) is what CI checks on the full
# run (.ci/run).
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip_all "jq is not installed (scripts/install-deps installs it)"

test_expect 'the demo runs seeds, engine, SFT, DPO and the benchmark; every stage file is JSONL' '
    BIN="$CL_BIN" OUT=out TRAIN=12 TEST=9 K=2 SFT_STEPS=3 STEPS=2 sh "$ROOT/pipelines/demo.sh" >log 2>err &&
    for f in train test dpo sft base.scored collab.scored; do
        test -s "out/$f.jsonl.zst" || { echo "missing out/$f.jsonl.zst"; exit 1; }
    done &&
    for f in $(find out -name "*.zst"); do
        zstdcat "$f" | jq -c . >/dev/null || { echo "unreadable $f"; exit 1; }
    done &&
    test -s out/sft/final/model.safetensors && test -s out/dpo/final/model.safetensors &&
    test "$(zstdcat out/test.jsonl.zst | wc -l)" = 9 &&
    jq -e ".tasks[0].runs | map(.run) == [\"base\", \"collab\"]" out/report.json >/dev/null &&
    jq -e ".tasks[0].comparisons[0].measures.metric.paired.n == 9" out/report.json >/dev/null &&
    grep -q "^base " log && grep -q "^collab " log && grep -q "off-policy" log &&
    grep -q "^whole loop: " log
'
test_expect 'EXTRA=0 keeps to the policy: no candidate comes from another source' '
    BIN="$CL_BIN" OUT=own TRAIN=6 TEST=9 K=2 EXTRA=0 FUTURE="local:$ROOT/examples/world-base" \
        SFT_STEPS=1 STEPS=0 sh "$ROOT/pipelines/demo.sh" >log 2>err &&
    test "$(zstdcat own/collab/*/s0/t0/branch.zst | jq -r "select(.candidates) | .candidates[].source" | sort -u)" = \
        "local:$ROOT/examples/world-base" &&
    ! grep -q "off-policy" log && test ! -e own/dpo
'
test_done
