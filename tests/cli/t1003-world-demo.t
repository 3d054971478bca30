#!/bin/sh
# `make demo` (pipelines/demo.sh), the whole loop on the offline world, here on a handful of
# tasks and a few steps: every stage runs and writes records that zstdcat | jq reads.  The claim
# itself (the gain's interval above zero, on 210 held-out tasks) is what CI checks on the full
# run (.ci/run).
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip_all "jq is not installed (scripts/install-deps installs it)"

test_expect 'two rounds of the policy alone: seeds, engine, SFT, engine again with the SFT model, SFT, DPO, benchmark' '
    BIN="$CL_BIN" OUT=out TRAIN=12 TEST=9 K=2 K2=4 EXTRA=0 ROUNDS=2 SFT_MIN= SFT_STEPS=3 STEPS=2 \
        sh "$ROOT/pipelines/demo.sh" >log 2>err &&
    for f in train test dpo sft dpo2 sft2 base.scored collab.scored; do
        test -s "out/$f.jsonl.zst" || { echo "missing out/$f.jsonl.zst"; exit 1; }
    done &&
    for f in $(find out -name "*.zst"); do
        zstdcat "$f" | jq -c . >/dev/null || { echo "unreadable $f"; exit 1; }
    done &&
    test -s out/sft/final/model.safetensors && test -s out/sft2/final/model.safetensors &&
    test -s out/dpo/final/model.safetensors &&
    # round 1 samples the base, round 2 the model round 1 fine-tuned, and nothing else
    test "$(zstdcat out/collab/*/s0/t0/branch.zst | jq -r "select(.candidates) | .candidates[].source" | sort -u)" = \
        "local:$ROOT/examples/world-base" &&
    test "$(zstdcat out/collab2/*/s0/t0/branch.zst | jq -r "select(.candidates) | .candidates[].source" | sort -u)" = \
        "local:$PWD/out/sft/final" &&
    test "$(zstdcat out/test.jsonl.zst | wc -l)" = 9 &&
    jq -e ".tasks[0].runs | map(.run) == [\"base\", \"collab\"]" out/report.json >/dev/null &&
    jq -e ".tasks[0].comparisons[0].measures.metric.paired.n == 9" out/report.json >/dev/null &&
    grep -q "^base .*asks_when_nothing_missing" log && grep -q "^collab " log && ! grep -q "off-policy" log &&
    grep -q "2 round(s)" log && grep -q "^whole loop: " log
'
test_expect 'EXTRA=1 adds the scripted careful candidate, and the text says it is off-policy' '
    BIN="$CL_BIN" OUT=careful TRAIN=6 TEST=9 K=2 EXTRA=1 ROUNDS=1 SFT_MIN= SFT_STEPS=1 STEPS=0 \
        sh "$ROOT/pipelines/demo.sh" >log 2>err &&
    zstdcat careful/collab/*/s0/t0/branch.zst | jq -r "select(.candidates) | .candidates[].source" | sort -u >src &&
    grep -qx "world:careful" src && grep -qx "local:$ROOT/examples/world-base" src &&
    grep -q "off-policy" log && test ! -e careful/dpo && test ! -e careful/collab2
'
test_expect 'an SFT floor that no MR-best dialogue passes stops the demo with the reason' '
    BIN="$CL_BIN" OUT=floor TRAIN=6 TEST=9 K=2 EXTRA=0 ROUNDS=1 SFT_MIN="accuracy>=2" \
        sh "$ROOT/pipelines/demo.sh" >log 2>err; test $? = 1 &&
    grep -q "no MR-best dialogue passes SFT_MIN" err && test ! -e floor/sft
'
test_done
