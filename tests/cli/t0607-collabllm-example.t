#!/bin/sh
# The worked example of collabllm(7) runs as written, from the source tree, against the mock:
# its data-engine commands in the scripted math world, its benchmark (the last block) in the
# evaluation world (tests/fixtures/pipelines/README).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
W="$FIXTURES/pipelines"

# Blocks of the worked example, one file per block (block1, block2, ...), mdoc escapes undone.
sed -n '/^\.Ss A worked example/,/^\.S[hs] /p' "$ROOT/man/collabllm.7" |
    awk -v dir="$_top" '/^\.Bd -literal/ { n++; on = 1; next } /^\.Ed/ { on = 0 }
        on { gsub(/\\e/, "\\"); gsub(/\\-/, "-"); print > (dir "/block" n) }'
nblocks=$(ls "$_top"/block* | wc -l)

# world SCRIPT: the mock with that script as the endpoint of every model, the default judge's
# (anthropic:) included.
world() {
    mock_start --script "$1" && OPENAI_BASE_URL=$MOCK_URL && ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT &&
    ANTHROPIC_API_KEY=sk-ant-example && export OPENAI_BASE_URL ANTHROPIC_BASE_URL ANTHROPIC_API_KEY
}
# The example runs from the source tree: a scratch copy of what it reads.
tree() { cp -r "$ROOT/pipelines" "$ROOT/examples" .; }

test_expect 'the worked example has its data-engine blocks and its benchmark block' 'test "$nblocks" -ge 5'
test_expect 'the data-engine part of the worked example runs and makes pairs, dialogues and rows' '
    world "$W/math-world.jsonl" && tree && i=1 &&
    while [ $i -lt $nblocks ]; do sh -e "$_top/block$i" >>out 2>>err || { cat err; exit 1; }; i=$((i + 1)); done &&
    test "$(zstd -dc run/conversations.jsonl.zst | wc -l)" = 8 && test -s run/dpo.jsonl.zst &&
    test -s run/sft.jsonl.zst && test -s run/rows.jsonl.zst &&
    grep -q "\"done_reason\"\|terminated" out && grep -q "pairs" out
'
test_expect 'the benchmark part of the worked example prints the table of both models' '
    world "$W/eval-world.jsonl" && tree &&
    sh -e "$_top/block$nblocks" >out 2>err || { cat err; exit 1; }
    grep -q "^base " out && grep -q "^collab " out && grep -q "Rel. improv. collab vs base" out &&
    test -s eval/report.json
'
test_done
