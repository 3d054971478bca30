#!/bin/sh
# The first `make demo`, now a test: both pipelines over HTTP against the mock server's
# scripted worlds (tests/fixtures/pipelines/scripted-demo.sh).
. "$(dirname "$0")/lib.sh"
test -x "$CL_TESTBIN/mockllm" || skip_all "build/tests/mockllm is not built (make check builds it)"

test_expect 'the scripted demo runs both pipelines and prints the table: base 0, collab 100' '
    BIN="$CL_BIN" TESTBIN="$CL_TESTBIN" OUT=out sh "$FIXTURES/pipelines/scripted-demo.sh" >log 2>&1 &&
    test -s out/collab/dpo.jsonl.zst && test -s out/collab/sft.jsonl.zst &&
    grep -q "^base " out/eval/report.txt && grep -q "^collab " out/eval/report.txt &&
    jq -e ".tasks[0].runs[0].measures.metric.mean == 0 and .tasks[0].runs[1].measures.metric.mean == 100" \
        out/eval/report.json >/dev/null
'
test_done
