#!/bin/sh
# pipelines/collab.mk and pipelines/eval.mk end to end against the loopback mock LLM server,
# with the scripted worlds of tests/fixtures/pipelines/ (user simulator, assistants, judges):
# the shape and arithmetic of the pairs, dialogues and report, cache replay, failures, and
# resumption after an interruption at a random point.  One reference run of each pipeline is
# made first and shared by the tests that only read it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
W="$FIXTURES/pipelines"
S=$_top/shared
mkdir -p "$S"

# shared_mock NAME SCRIPT: a mock for the whole script (mock_start of mock.sh serves one test
# body); its URL in $URL_NAME, its requests in $S/NAME.log.  Stopped when the script exits.
pids=
trap 'for p in $pids; do kill $p 2>/dev/null; wait $p 2>/dev/null; done; rm -rf "$_top"' EXIT
shared_mock() {
    "$CL_TESTBIN/mockllm" --script "$2" --log "$S/$1.log" >"$S/$1.port" 2>"$S/$1.err" &
    pids="$pids $!"
    _i=0
    until test -s "$S/$1.port"; do
        _i=$((_i + 1))
        [ $_i -le 100 ] && kill -0 $! 2>/dev/null || { cat "$S/$1.err"; echo "Bail out! mockllm"; exit 1; }
        sleep 0.05
    done
    eval "URL_$1=http://127.0.0.1:$(cat "$S/$1.port")/v1"
}
shared_mock engine "$W/math-world.jsonl"
shared_mock bench "$W/eval-world.jsonl"
cl-seed -q --preset math --limit 3 "$ROOT/examples/math.jsonl" >"$S/seeds.zst"

# collab OUT [make arguments]: the data engine on the seeds, two shards, a small tree.
collab() {
    _out=$1; shift
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS="$S/seeds.zst" OUT="$_out" BIN="$CL_BIN" \
        API_BASE="$URL_engine" ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j \
        SAMPLES=2 MAX_TURNS=4 SHARDS=2 "$@"
}
# evalrun OUT [make arguments]: the benchmark of base and collab on the seeds.
evalrun() {
    _out=$1; shift
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$S/seeds.zst" OUT="$_out" BIN="$CL_BIN" \
        API_BASE="$URL_bench" MODELS="base=openai:base collab=openai:collab" MODE_collab=system \
        USER_MODEL=openai:u JUDGE=openai:j BOOTSTRAP=200 "$@"
}
calls() { wc -l <"$S/$1.log" | tr -d " "; }
z() { zstd -dc "$@"; }
R=$S/run
E=$S/ev
t0=$(date +%s.%N)
collab "$R" -j2 all rows >"$S/run.log" 2>&1 || { cat "$S/run.log"; echo "Bail out! reference data engine run"; exit 1; }
engine_secs=$(awk -v t0=$t0 -v t1=$(date +%s.%N) "BEGIN { print t1 - t0 }")
engine_calls=$(calls engine)
evalrun "$E" -j2 >"$S/ev.log" 2>&1 || { cat "$S/ev.log"; echo "Bail out! reference benchmark run"; exit 1; }

test_expect 'the data engine runs to the end: every conversation finished, pairs and dialogues written' '
    z $R/conversations.jsonl.zst >conv && test "$(wc -l <conv)" = 3 &&
    jq -s -e "all(.done and .done_reason == \"terminated\" and .turn == 2 and (.messages | length) == 5
               and ([.messages[].role] == [\"user\",\"assistant\",\"user\",\"assistant\",\"user\"])
               and (.picks | length) == 2)" conv >/dev/null &&
    test "$(z $R/dpo.jsonl.zst | wc -l)" = 6 && test "$(z $R/sft.jsonl.zst | wc -l)" = 3 &&
    test "$(z $R/rows.jsonl.zst | wc -l)" = 12 && ! ls $R/s*/t*/*.tmp 2>/dev/null
'
test_expect 'the proactive reply wins turn 0 and the answer wins turn 1, as the scripted judges rate them' '
    z $R/dpo.jsonl.zst | jq -s -e "
        (map(select(.turn == 0)) | length == 3 and all(.chosen[0].content == \"Which problem do you mean? Please paste it.\"
                                                 and .rejected[0].content == \"Sure, what is the question?\"))
        and (map(select(.turn == 1)) | length == 3 and all(.chosen[0].content == \"The answer is 12.\"))
        and all(.prompt[0].role == \"system\" and .score_chosen - .score_rejected >= 0.02)" >/dev/null
'
test_expect 'pair scores are the max and min MR of their turn, MR the mean of R, R the v2 math reward' '
    z $R/scored.jsonl.zst >scored && z $R/dpo.jsonl.zst >dpo &&
    jq -s -e "all(.[]; .candidates[] | .futures as \$f | (.mr.mean - ([\$f[].R] | add / length) | fabs) < 1e-12
              and ([\$f[] | (.R - (.scores.accuracy + 0.5 * .scores.interactivity - 0.5 * .scores.tokens / 1000)) | fabs] | max) < 1e-12)" scored >/dev/null &&
    jq -s -c "map({key: \"\(.id)/t\(.turn)\", value: [([.candidates[].mr.mean] | max), ([.candidates[].mr.mean] | min)]}) | from_entries" scored >want &&
    jq -s -e --slurpfile w want "length == 6 and all(.[]; [.score_chosen, .score_rejected] == \$w[0][.id])" dpo >/dev/null
'
test_expect 'the dialogues are the chosen chains behind the system prompt, ending on the model' '
    z $R/sft.jsonl.zst | jq -s -e "length == 3 and all([.messages[].role] == [\"system\",\"user\",\"assistant\",\"user\",\"assistant\"]
        and .messages[2].content == \"Which problem do you mean? Please paste it.\" and .messages[4].content == \"The answer is 12.\")" >/dev/null
'
test_expect 'eval.mk applies the published settings of the seeds'"'"' task; TASK and every variable override them' '
    cl-seed -q --preset bigcodebench --limit 2 "$ROOT/examples/bigcodebench.jsonl" >code.zst &&
    cl-seed -q --preset medium --recent 1 --limit 2 "$ROOT/examples/medium.jsonl" >doc.zst &&
    plan() { make -n -f "$ROOT/pipelines/eval.mk" OUT=o "$@" | grep -o -e "--assistant-temperature [0-9.]*" \
        -e "--assistant-max-tokens [0-9]*" -e "--max-turns [0-9]*" -e "--metric [a-z_]*" -e "--tokens [a-z0-9]*" \
        -e "--prompt-set [a-z]*" | sort -u | tr "\n" " "; } &&
    test "$(plan SEEDS=$S/seeds.zst)" = "--assistant-max-tokens 1536 --assistant-temperature 0.6 --max-turns 6 --prompt-set official --tokens cl100k " &&
    test "$(plan SEEDS=doc.zst)" = "--assistant-max-tokens 2048 --assistant-temperature 0.8 --max-turns 8 --metric bleu --prompt-set official --tokens cl100k " &&
    test "$(plan SEEDS=code.zst)" = "--assistant-max-tokens 1536 --assistant-temperature 0.6 --max-turns 6 --metric pass_rate --prompt-set official --tokens cl100k " &&
    test "$(plan SEEDS=code.zst TASK=document)" = "$(plan SEEDS=doc.zst)" &&
    plan SEEDS=doc.zst ASSISTANT_TEMPERATURE_document=0.3 MAX_TURNS=5 PROMPT_SET=cl TOKENS=words >p &&
    test "$(cat p)" = "--assistant-max-tokens 2048 --assistant-temperature 0.3 --max-turns 5 --metric bleu --prompt-set cl --tokens words "
'
test_expect 'without SEEDS the pipelines stop and say what is missing' '
    { make -s -f "$ROOT/pipelines/collab.mk" 2>err; test $? != 0; } && grep -q "SEEDS=FILE is required" err &&
    { make -s -f "$ROOT/pipelines/eval.mk" 2>err; test $? != 0; } && grep -q "SEEDS=FILE is required" err
'
test_expect 'the paper-era rule, a tighter cap and SYSTEM_PROMPT=0 reach the tools' '
    collab run NEXT_USER=worst-open MAX_TURNS=1 SYSTEM_PROMPT=0 2>log &&
    z run/conversations.jsonl.zst | jq -s -e "length == 3 and all(.done_reason == \"max_turns\" and .turn == 1)" >/dev/null &&
    z run/dpo.jsonl.zst | jq -s -e "length == 3 and all(.prompt[0].role == \"user\")" >/dev/null
'
test_expect 'MODEL=openai:NAME alone serves every role; a run prints one line per step that had records' '
    . "$TESTS_DIR/cli/mock.sh" && mock_start --script "$W/math-world.jsonl" --model one &&
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS="$S/seeds.zst" OUT=one BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        MODEL=openai:one SAMPLES=2 MAX_TURNS=4 2>log &&
    test "$(z one/dpo.jsonl.zst | wc -l)" = 6 &&
    jq -s -e "length > 0 and all(.body.model == \"one\")" "$MOCK_LOG" >/dev/null &&
    ! grep -q " 0 records in" log && test "$(grep -c "^cl-rollout: [0-9]* records in" log)" = 2 &&
    grep -q "^cl-judge: 3 records in, 3 out, .* s; llm: [0-9]* calls" log &&
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS="$S/seeds.zst" OUT=one2 BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        MODEL=openai:one USER_MODEL=openai:u SAMPLES=2 MAX_TURNS=4 VERBOSE=1 2>log &&
    grep -q " 0 records in" log && jq -s -e "any(.body.model == \"u\")" "$MOCK_LOG" >/dev/null
'
# interrupt DELAY COMMAND: runs the shell command in its own process group and kills the group
# (as Ctrl-C would) after DELAY seconds.
interrupt() {
    setsid sh -c "exec $2" >/dev/null 2>&1 &
    _pid=$!
    sleep "$1"
    kill -TERM -$_pid 2>/dev/null
    wait $_pid
    return 0
}
# until_cut DELAY FILE MOCK COMMAND: interrupt, halving the delay until the run is cut before
# it writes FILE (a loaded machine can make the reference run slower than this one).  $before
# is MOCK's request count when the last attempt started.
until_cut() {
    _d=$1
    before=$(calls $3)
    interrupt $_d "$4"
    while test -e "$2"; do
        rm -rf "$(dirname "$2")" && _d=$(awk -v d=$_d "BEGIN { print d / 2 }") && before=$(calls $3) &&
            interrupt $_d "$4"
    done
    echo "# interrupted after $_d s"
}
ENGINE_CMD="make -s -f '$ROOT/pipelines/collab.mk' SEEDS='$S/seeds.zst' OUT=cut BIN='$CL_BIN' \
    API_BASE='$URL_engine' ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j SAMPLES=2 MAX_TURNS=4 SHARDS=2 -j2"
BENCH_CMD="make -s -f '$ROOT/pipelines/eval.mk' SEEDS='$S/seeds.zst' OUT=cut BIN='$CL_BIN' API_BASE='$URL_bench' \
    MODELS='base=openai:base collab=openai:collab' MODE_collab=system USER_MODEL=openai:u JUDGE=openai:j BOOTSTRAP=200"
# Records compared with their keys sorted and without latencies: cl-judge adds a record's scores
# in the order its calls complete, which differs between a run and its replay.
same_records() {
    _strip="walk(if type == \"object\" then del(.latency_s) else . end)"
    zstd -dc "$1" | jq -S -c "$_strip" >_a && zstd -dc "$2" | jq -S -c "$_strip" >_b && cmp _a _b
}
test_expect 'interrupted at a random point and run again, the data engine gives the same final bytes' '
    delay=$(awk -v s="$$" -v d="$engine_secs" "BEGIN { srand(s); printf \"%.2f\", (0.05 + rand() * 0.6) * d }") &&
    until_cut $delay cut/dpo.jsonl.zst engine "$ENGINE_CMD" &&
    echo "# the reference run took $engine_secs s; made before the interruption: $(cd cut && find . -name "*.zst" | sort | tr "\n" " ")" &&
    collab cut -j2 2>log &&
    cmp $R/dpo.jsonl.zst cut/dpo.jsonl.zst && cmp $R/sft.jsonl.zst cut/sft.jsonl.zst &&
    same_records $R/conversations.jsonl.zst cut/conversations.jsonl.zst &&
    same_records $R/scored.jsonl.zst cut/scored.jsonl.zst &&
    spent=$(( $(calls engine) - before )) &&
    echo "# calls: reference run $engine_calls, interrupted and resumed $spent" &&
    test $spent -le $(( engine_calls + 64 ))
'
test_expect 'a finished data engine run made again after clean replays every call from the cache' '
    cp -r $R replay && make -s -f "$ROOT/pipelines/collab.mk" OUT=replay SHARDS=2 clean &&
    test -d replay/cache && ! test -e replay/dpo.jsonl.zst && ! test -e replay/s0 &&
    before=$(calls engine) && collab replay 2>log && test "$(calls engine)" = "$before" &&
    cmp $R/dpo.jsonl.zst replay/dpo.jsonl.zst && cmp $R/sft.jsonl.zst replay/sft.jsonl.zst
'
test_expect 'a failing step stops the run; after the fix make goes on without redoing what is done' '
    { collab run MAX_TURNS=2 JUDGE_FLAGS=--no-such-flag >out 2>err; test $? != 0; } &&
    ls run/s*/t0/branch.zst >made && test -s made && ! ls run/s*/t0/scored.zst 2>/dev/null &&
    sleep 1 && touch marker && collab run MAX_TURNS=2 2>log && test -s run/dpo.jsonl.zst &&
    test -z "$(find $(cat made) -newer marker)"
'
test_expect 'records a judge cannot score stop the run, or with ALLOW_FAILED=1 land in .rejects and the run goes on' '
    jq -c "if (.match | test(\"collaborated with a user|<conversation>\")) then .reply = \"no idea\" else . end" \
        "$W/math-world.jsonl" >mute.jsonl || exit 1
    mock_start --script mute.jsonl &&
    args="SEEDS=$S/seeds.zst BIN=$CL_BIN API_BASE=$MOCK_URL ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j SAMPLES=1 MAX_TURNS=1" &&
    { make -s -f "$ROOT/pipelines/collab.mk" $args OUT=strict >out 2>err; test $? != 0; } &&
    ! test -e strict/s0/t0/scored.zst && grep -q "interactivity" err &&
    make -s -f "$ROOT/pipelines/collab.mk" $args OUT=lenient ALLOW_FAILED=1 2>err &&
    test "$(wc -l <lenient/s0/t0/judged.rejects)" = 3 && test "$(zstd -dc lenient/dpo.jsonl.zst | wc -l)" = 0 &&
    jq -s -e "all(.error.tool == \"cl-judge\")" lenient/s0/t0/judged.rejects >/dev/null
'
test_expect 'a judge server that stays down stops the run (69), or with ALLOW_FAILED=1 its records land in .rejects and the run goes on' '
    mock_start --fault 500=1 &&
    args="SEEDS=$S/seeds.zst BIN=$CL_BIN API_BASE=$URL_engine ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j SAMPLES=1 MAX_TURNS=1" &&
    jflags="JUDGE_FLAGS=--judge-api-base $MOCK_URL --retries 0" &&
    { make -s -f "$ROOT/pipelines/collab.mk" $args "$jflags" OUT=strict >out 2>err; test $? != 0; } &&
    ! test -e strict/s0/t0/scored.zst &&
    make -s -f "$ROOT/pipelines/collab.mk" $args "$jflags" OUT=lenient ALLOW_FAILED=1 2>err &&
    test "$(wc -l <lenient/s0/t0/judged.rejects)" = 3 &&
    jq -s -e "all(.error.message | test(\"HTTP 500\"))" lenient/s0/t0/judged.rejects >/dev/null
'
test_expect 'TASK=document extracts the document and rewards character BLEU minus 0.1 per thousand assistant tokens (the shorter draft wins)' '
    mock_start --script "$W/document-world.jsonl" &&
    cl-seed -q --preset medium --recent 1 --limit 2 "$ROOT/examples/medium.jsonl" >docs.zst &&
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS=docs.zst OUT=doc TASK=document BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        ASSISTANT=openai:a USER_MODEL=openai:u JUDGE=openai:j SAMPLES=2 MAX_TURNS=3 MIN_GAP=0 2>log &&
    zstd -dc doc/scored.jsonl.zst >scored && test -s scored &&
    jq -s -e "all(.[]; .candidates[].futures[] | .extracted.document == \"I carry a paper notebook. Paper is slow, and that is the point.\"
              and .scores.bleu > 0 and .scores.bleu < 1 and (.R - (.scores.bleu - 0.1 * .scores.tokens / 1000) | fabs) < 1e-12)" scored >/dev/null &&
    zstd -dc doc/conversations.jsonl.zst | jq -s -e "length == 2 and all(.done)" >/dev/null &&
    zstd -dc doc/dpo.jsonl.zst | jq -s -e "length == 2 and all(.task == \"document\"
        and .chosen[0].content == \"Here is a post about notebooks. Paper is slow.\")" >/dev/null
'
test_expect 'the benchmark runs both models side by side and the collab model gets the system prompt' '
    z $E/base/scored.jsonl.zst | jq -s -e "length == 3 and all(.done and (.messages | length) == 3)" >/dev/null &&
    z $E/collab/scored.jsonl.zst | jq -s -e "length == 3 and all(.done and (.messages | length) == 5)" >/dev/null &&
    jq -s -e "map(select(.body.model == \"collab\")) | length > 0 and all(.body.messages[0].role == \"system\")" $S/bench.log >/dev/null &&
    jq -s -e "map(select(.body.model == \"base\")) | length > 0 and all(.body.messages[0].role == \"user\")" $S/bench.log >/dev/null &&
    grep -q "collab" $E/report.md && grep -q "^base " $E/report.txt
'
test_expect 'the report means and the relative improvement are those of the scored conversations' '
    for m in base collab; do
        z $E/$m/scored.jsonl.zst | jq -s -c "{acc: (map(.scores.accuracy) | add / length * 100),
            tok: (map(.scores.tokens) | add / length / 1000), itr: (map(.scores.interactivity) | add / length * 100)}" >$m.want
    done &&
    jq -e --slurpfile b base.want --slurpfile c collab.want "
        .tasks[0].task == \"math\" and .tasks[0].metric == \"accuracy\" and
        (.tasks[0].runs | map(.run) == [\"base\", \"collab\"]) and
        ([[.tasks[0].runs[] | .measures | .metric.mean, .tokens.mean, .itr.mean],
          [\$b[0].acc, \$b[0].tok, \$b[0].itr, \$c[0].acc, \$c[0].tok, \$c[0].itr]] | transpose
         | map(.[0] - .[1] | fabs) | max < 1e-9) and
        (.tasks[0].comparisons[0].measures.tokens.rel_improvement - 100 * (\$b[0].tok - \$c[0].tok) / \$b[0].tok | fabs) < 1e-9 and
        \$b[0].acc == 0 and \$c[0].acc == 100 and \$c[0].itr == 100" $E/report.json >/dev/null
'
if command -v gnuplot >/dev/null; then
test_expect 'make plot draws the report as a PNG' '
    evalrun $E plot 2>log && head -c 8 $E/report.png | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a"
'
else
    test_skip 'make plot draws the report as a PNG' 'gnuplot is not installed (scripts/install-deps)'
fi
test_expect 'an interrupted benchmark resumes to the same report' '
    until_cut 0.3 cut/report.json bench "$BENCH_CMD" &&
    evalrun cut 2>log && cmp $E/report.json cut/report.json && cmp $E/report.md cut/report.md &&
    for m in base collab; do same_records $E/$m/scored.jsonl.zst cut/$m/scored.jsonl.zst || exit 1; done
'
test_done
