#!/bin/sh
# pipelines/collab.mk and pipelines/eval.mk end to end against the loopback mock LLM server,
# with the scripted worlds of tests/fixtures/pipelines/ (user simulator, assistants, judges):
# the shape and arithmetic of the pairs, dialogues and report, and resumption after an
# interruption at a random point.
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip_all "jq is not installed (scripts/install-deps installs it)"
test -x "$CL_TESTBIN/mockllm" || skip_all "build/tests/mockllm is not built (make check builds it)"
W="$FIXTURES/pipelines"

# mock_start SCRIPT: the mock on a free loopback port, stopped when the test body ends.
mock_start() {
    "$CL_TESTBIN/mockllm" --script "$1" --log "$PWD/mock.log" >mock.port 2>mock.err &
    MOCK_PID=$!
    trap 'kill $MOCK_PID 2>/dev/null; wait $MOCK_PID 2>/dev/null' EXIT
    _i=0
    until test -s mock.port; do
        _i=$((_i + 1))
        [ $_i -le 100 ] && kill -0 $MOCK_PID 2>/dev/null || { cat mock.err; return 1; }
        sleep 0.05
    done
    URL=http://127.0.0.1:$(cat mock.port)/v1
}
seeds() { cl-seed -q --preset math --limit 3 "$ROOT/examples/math.jsonl" >seeds.zst; }
# collab OUT [make arguments]: the data engine on seeds.zst, two shards, small tree.
collab() {
    _out=$1; shift
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst OUT="$_out" BIN="$CL_BIN" \
        API_BASE="$URL" ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j \
        SAMPLES=2 MAX_TURNS=4 SHARDS=2 "$@"
}
z() { zstd -dc "$@"; }

test_expect 'the data engine runs to the end: every conversation finished, pairs and dialogues written' '
    mock_start "$W/math-world.jsonl" && seeds && collab run -j2 rows 2>log && collab run -j2 2>>log &&
    z run/conversations.jsonl.zst >conv && test "$(wc -l <conv)" = 3 &&
    jq -s -e "all(.done and .done_reason == \"terminated\" and .turn == 2 and (.messages | length) == 5
               and ([.messages[].role] == [\"user\",\"assistant\",\"user\",\"assistant\",\"user\"])
               and (.picks | length) == 2)" conv >/dev/null &&
    test "$(z run/dpo.jsonl.zst | wc -l)" = 6 && test "$(z run/sft.jsonl.zst | wc -l)" = 3 &&
    test "$(z run/rows.jsonl.zst | wc -l)" = 12
'
test_expect 'the proactive reply wins turn 0 and the answer wins turn 1, as the scripted judges rate them' '
    mock_start "$W/math-world.jsonl" && seeds && collab run 2>log &&
    z run/dpo.jsonl.zst | jq -s -e "
        (map(select(.turn == 0)) | length == 3 and all(.chosen[0].content == \"Which problem do you mean? Please paste it.\"
                                                 and .rejected[0].content == \"Sure, what is the question?\"))
        and (map(select(.turn == 1)) | length == 3 and all(.chosen[0].content == \"The answer is 12.\"))
        and all(.prompt[0].role == \"system\" and .score_chosen - .score_rejected >= 0.02)" >/dev/null
'
test_expect 'pair scores are the max and min MR of their turn, MR the mean of R, R the v2 math reward' '
    mock_start "$W/math-world.jsonl" && seeds && collab run 2>log &&
    z run/scored.jsonl.zst >scored && z run/dpo.jsonl.zst >dpo &&
    jq -s -e "all(.[]; .candidates[] | .futures as \$f | (.mr.mean - ([\$f[].R] | add / length) | fabs) < 1e-12
              and ([\$f[] | (.R - (.scores.accuracy + 0.5 * .scores.interactivity - 0.5 * .scores.tokens / 1000)) | fabs] | max) < 1e-12)" scored >/dev/null &&
    jq -s -c "map({key: \"\(.id)/t\(.turn)\", value: [([.candidates[].mr.mean] | max), ([.candidates[].mr.mean] | min)]}) | from_entries" scored >want &&
    jq -s -e --slurpfile w want "all(.[]; [.score_chosen, .score_rejected] == \$w[0][.id])" dpo >/dev/null
'
test_expect 'the dialogues are the chosen chains behind the system prompt, ending on the model' '
    mock_start "$W/math-world.jsonl" && seeds && collab run 2>log &&
    z run/sft.jsonl.zst | jq -s -e "length == 3 and all([.messages[].role] == [\"system\",\"user\",\"assistant\",\"user\",\"assistant\"]
        and .messages[2].content == \"Which problem do you mean? Please paste it.\" and .messages[4].content == \"The answer is 12.\")" >/dev/null
'
test_expect 'the paper-era rule, a tighter cap and SYSTEM_PROMPT=0 reach the tools' '
    mock_start "$W/math-world.jsonl" && seeds && collab run NEXT_USER=worst-open MAX_TURNS=1 SYSTEM_PROMPT=0 2>log &&
    z run/conversations.jsonl.zst | jq -s -e "length == 3 and all(.done_reason == \"max_turns\" and .turn == 1)" >/dev/null &&
    z run/dpo.jsonl.zst | jq -s -e "length == 3 and all(.prompt[0].role == \"user\")" >/dev/null
'
test_expect 'interrupted at a random point and run again, the data engine gives the same final bytes' '
    mock_start "$W/math-world.jsonl" && seeds && t0=$(date +%s.%N) && collab whole -j2 2>log &&
    calls=$(wc -l <mock.log) &&
    delay=$(awk -v s="$$" -v t0=$t0 -v t1=$(date +%s.%N) "BEGIN { srand(s); printf \"%.2f\", (0.1 + rand() * 0.7) * (t1 - t0) }") &&
    echo "# interrupting after $delay s" &&
    { setsid sh -c "exec make -s -f \"$ROOT/pipelines/collab.mk\" SEEDS=seeds.zst OUT=cut BIN=\"$CL_BIN\" \
        API_BASE=\"$URL\" ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j SAMPLES=2 MAX_TURNS=4 SHARDS=2 -j2" \
        >/dev/null 2>&1 & pid=$!; } &&
    sleep "$delay" && kill -TERM -$pid 2>/dev/null; wait $pid;
    ! test -e cut/dpo.jsonl.zst && ! test -e cut/sft.jsonl.zst &&
    echo "# made before the interruption: $(cd cut && find . -name "*.zst" | sort | tr "\n" " ")" &&
    collab cut -j2 2>>log &&
    cmp whole/dpo.jsonl.zst cut/dpo.jsonl.zst && cmp whole/sft.jsonl.zst cut/sft.jsonl.zst &&
    strip="walk(if type == \"object\" then del(.latency_s) else . end)" &&
    z whole/conversations.jsonl.zst | jq -c "$strip" >a && z cut/conversations.jsonl.zst | jq -c "$strip" >b && cmp a b &&
    z whole/scored.jsonl.zst | jq -c "$strip" >a && z cut/scored.jsonl.zst | jq -c "$strip" >b && cmp a b &&
    echo "# calls: whole run $calls, interrupted and resumed $(( $(wc -l <mock.log) - calls ))" &&
    test $(( $(wc -l <mock.log) - calls )) -le $(( calls + 64 ))
'
test_expect 'a finished data engine run replays from the cache without calling the models' '
    mock_start "$W/math-world.jsonl" && seeds && collab run 2>log && n=$(wc -l <mock.log) &&
    cp run/dpo.jsonl.zst dpo.first && make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst OUT=run clean &&
    test -d run/cache && ! test -e run/dpo.jsonl.zst && collab run 2>>log &&
    test "$(wc -l <mock.log)" = "$n" && cmp dpo.first run/dpo.jsonl.zst
'
test_expect 'a failing step stops the run; after the fix make goes on from there without redoing what is done' '
    mock_start "$W/math-world.jsonl" && seeds &&
    { collab run JUDGE_FLAGS=--no-such-flag >out 2>err; test $? != 0; } &&
    ls run/s*/t0/branch.zst >made && test -s made && ! ls run/s*/t0/scored.zst 2>/dev/null &&
    sleep 1 && touch marker && collab run 2>log && test -s run/dpo.jsonl.zst &&
    test -z "$(find $(cat made) -newer marker)"
'

# eval OUT [make arguments]: the benchmark of base and collab on seeds.zst.
evalrun() {
    _out=$1; shift
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS=seeds.zst OUT="$_out" BIN="$CL_BIN" API_BASE="$URL" \
        MODELS="base=openai:base collab=openai:collab" MODE_collab=system USER_MODEL=openai:u \
        JUDGE=openai:j BOOTSTRAP=200 "$@"
}
test_expect 'the benchmark runs both models side by side and the collab model gets the system prompt' '
    mock_start "$W/eval-world.jsonl" && seeds && evalrun ev -j2 2>log &&
    z ev/base/scored.jsonl.zst | jq -s -e "length == 3 and all(.done and (.messages | length) == 3)" >/dev/null &&
    z ev/collab/scored.jsonl.zst | jq -s -e "length == 3 and all(.done and (.messages | length) == 5)" >/dev/null &&
    jq -s -e "map(select(.body.model == \"collab\")) | length > 0 and all(.body.messages[0].role == \"system\")" mock.log >/dev/null &&
    jq -s -e "map(select(.body.model == \"base\")) | length > 0 and all(.body.messages[0].role == \"user\")" mock.log >/dev/null &&
    grep -q "collab" ev/report.md && grep -q "base" ev/report.txt
'
test_expect 'the report means and the relative improvement are those of the scored conversations' '
    mock_start "$W/eval-world.jsonl" && seeds && evalrun ev 2>log &&
    for m in base collab; do
        z ev/$m/scored.jsonl.zst | jq -s -c "{acc: (map(.scores.accuracy) | add / length * 100),
            tok: (map(.scores.tokens) | add / length / 1000), itr: (map(.scores.interactivity) | add / length * 100)}" >$m.want
    done &&
    jq -e --slurpfile b base.want --slurpfile c collab.want "
        .tasks[0].task == \"math\" and .tasks[0].metric == \"accuracy\" and
        (.tasks[0].runs | map(.run) == [\"base\", \"collab\"]) and
        ([[.tasks[0].runs[] | .measures | .metric.mean, .tokens.mean, .itr.mean],
          [\$b[0].acc, \$b[0].tok, \$b[0].itr, \$c[0].acc, \$c[0].tok, \$c[0].itr]] | transpose
         | map(.[0] - .[1] | fabs) | max < 1e-9) and
        (.tasks[0].comparisons[0].measures.tokens.rel_improvement - 100 * (\$b[0].tok - \$c[0].tok) / \$b[0].tok | fabs) < 1e-9 and
        \$b[0].acc == 0 and \$c[0].acc == 100 and \$c[0].itr == 100" ev/report.json >/dev/null
'
test_expect 'an interrupted benchmark resumes to the same report' '
    mock_start "$W/eval-world.jsonl" && seeds && evalrun whole 2>log &&
    { setsid sh -c "exec make -s -f \"$ROOT/pipelines/eval.mk\" SEEDS=seeds.zst OUT=cut BIN=\"$CL_BIN\" API_BASE=\"$URL\" \
        MODELS=\"base=openai:base collab=openai:collab\" MODE_collab=system USER_MODEL=openai:u JUDGE=openai:j BOOTSTRAP=200" \
        >/dev/null 2>&1 & pid=$!; } &&
    sleep 0.3 && kill -TERM -$pid 2>/dev/null; wait $pid;
    evalrun cut 2>>log && cmp whole/report.json cut/report.json && cmp whole/report.md cut/report.md
'
test_done
