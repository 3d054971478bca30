#!/bin/sh
# local:DIR — models cl-finetune writes answer every role in-process: replies, sampling, stop
# strings, the cache fingerprint, adapters, cl-rollout --full/--branch with local roles,
# resume after a kill, and bad model directories.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
. "$(dirname "$0")/mock.sh"
S="$_top/shared"
# A base that memorised "What is color N?" -> "Color N is C." with a context long enough for
# cl-rollout's user-simulator prompts, and a LoRA DPO run on it.
{ ft_base "$S" 4096 &&
  cl-finetune --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-2 --epochs 6 \
      --batch 4 --seed 2 -q --run "$S/dpo"; } 2>"$_top/base.err" ||
    { cat "$_top/base.err"; echo "Bail out! cannot train the models"; exit 1; }
M="$S/base/final"
LLMCALL="$CL_TESTBIN/llmcall"
questions() { jq -c '{id: .messages[0].content, messages: [.messages[0]]}' "$S/sft.jsonl"; }
call() { "$LLMCALL" -q -Z "$@"; }
# records without latencies (they differ between a run and its resumption)
steady() { zstd -dcf "$@" | jq -c 'walk(if type == "object" then del(.latency_s) else . end)'; }
seeds() { jq -cn --argjson n "$1" 'range(1; $n + 1) | {id: "s\(.)", task: "document",
          task_desc: "colours", prompt: "goal-\(.): What is color \(. % 8)?"}'; }
LOCAL="--assistant local:$M --user local:$M --user-style userlm --assistant-max-tokens 12 --user-max-tokens 12"

test_expect 'greedy replies of local:DIR are the dialogues the model memorised, with usage and stop' '
    questions >in && call --assistant "local:$M" --assistant-temperature 0 --no-cache in >out &&
    jq -r .reply out >got && jq -r ".messages[1].content" "$S/sft.jsonl" >want && diff want got &&
    jq -e "select(.finish_reason != \"stop\" or .usage.prompt_tokens < 10 or .usage.completion_tokens < 5)" out
    test $? = 4
'
test_expect 'stop strings cut the reply (stop), max tokens end it (length)' '
    questions >in && call --assistant "local:$M" --assistant-temperature 0 --assistant-stop " is" --no-cache in >out &&
    jq -r .reply out | head -2 >got && printf "Color 0\nColor 1\n" | diff - got &&
    call --assistant "local:$M" --assistant-temperature 0 --assistant-max-tokens 2 --no-cache in >out2 &&
    jq -e "select(.finish_reason != \"length\" or .usage.completion_tokens != 2)" out2; test $? = 4
'
test_expect 'sampled replies depend on the sample key only: alone, among 40 others, in any order, twice' '
    jq -cn "range(40) | {id: \"r\(.)\", messages: [{role: \"user\", content: \"What is color \(. % 8)?\"}]}" >in &&
    call --assistant "local:$M" --assistant-temperature 1.5 --no-cache --max-inflight 40 in >all &&
    tac in >rev && call --assistant "local:$M" --assistant-temperature 1.5 --no-cache --max-inflight 7 rev >some &&
    head -1 in >one && call --assistant "local:$M" --assistant-temperature 1.5 --no-cache one >alone &&
    jq -c "[.id, .reply]" all | sort >a && jq -c "[.id, .reply]" some | sort >b && cmp a b &&
    head -1 all | jq -c "[.id, .reply]" >x && jq -c "[.id, .reply]" alone | cmp - x &&
    test "$(jq -r .reply all | sort -u | wc -l)" -gt 8 &&
    OMP_NUM_THREADS=2 call --assistant "local:$M" --assistant-temperature 1.5 --no-cache --max-inflight 40 in >t2 &&
    steady all >s1 && steady t2 >s2 && cmp s1 s2 &&
    CL_SIMD=scalar call --assistant "local:$M" --assistant-temperature 0 --no-cache one >sc &&
    jq -e ".reply == \"Color 0 is red.\"" sc
'
test_expect 'n choices are n sequences (greedy: n times the tokens); a seed member changes samples' '
    jq -cn "{id: \"a\", messages: [{role: \"user\", content: \"What is color 3?\"}]}" >in &&
    call --assistant "local:$M" --assistant-temperature 0 --no-cache in >one &&
    call --assistant "local:$M" --assistant-temperature 0 --assistant-n 3 --no-cache in >three &&
    test "$(jq .usage.completion_tokens three)" = "$(jq ".usage.completion_tokens * 3" one)" &&
    jq -cn "range(30) | {id: \"r\(.)\", messages: [{role: \"user\", content: \"What is color 3?\"}]}" >many &&
    call --assistant "local:$M" --assistant-temperature 2 --assistant-seed 5 --no-cache many >s5 &&
    call --assistant "local:$M" --assistant-temperature 2 --assistant-seed 5 --no-cache many >s5b &&
    call --assistant "local:$M" --assistant-temperature 2 --assistant-seed 6 --no-cache many >s6 &&
    steady s5 >a && steady s5b >b && steady s6 >c && cmp a b && ! cmp -s a c
'
test_expect 'the cache replays local calls; a moved copy replays, a new checkpoint in its place does not' '
    questions >in && call --assistant "local:$M" --cache c --price 5,5 --stats st1 in >r1 &&
    jq -e ".llm.cache_writes == 8 and (.llm.cost_usd // 0) == 0" st1 &&
    cp -r "$M" m && call --assistant local:m --cache c --price 5,5 --stats st2 in >r2 && cmp r1 r2 &&
    jq -e ".llm.cache_hits == 8" st2 && rm -r m &&
    cl-finetune --model "$M" --sft "$S/sft.jsonl" --run more --lr 1e-3 --max-steps 1 --batch 8 --full -q &&
    mv more/final m && call --assistant local:m --cache c --stats st3 in >r3 &&
    jq -e ".llm.cache_hits == 0" st3
'
test_expect 'an adapter directory runs on the base it names, as +adapter= does, and differs from the base' '
    questions >in && call --assistant "local:$S/dpo/final" --assistant-temperature 0 --no-cache in >a &&
    call --assistant "local:$M+adapter=$S/dpo/final" --assistant-temperature 0 --no-cache in >b &&
    steady a >sa && steady b >sb && cmp sa sb &&
    call --assistant "local:$M" --assistant-temperature 0 --no-cache in >base && ! cmp -s a base &&
    call --assistant "local:$M+bf16" --assistant-temperature 0 --no-cache in >bf &&
    test "$(jq -r .reply bf | grep -c "^Color [0-7] is")" = 8
'
test_expect 'cl-rollout --full with local assistant and user: complete conversations, replayed from the cache' '
    seeds 6 >in && cl-rollout --full -q -Z $LOCAL --max-turns 3 --cache c --stats st in >o1 &&
    test "$(jq -s length o1)" = 6 && jq -e "select(.turn != 3 or (.messages | length) != 6)" o1; test $? = 4 &&
    cl-rollout --full -q -Z $LOCAL --max-turns 3 --cache c --stats st2 in >o2 && cmp o1 o2 &&
    jq -e ".llm.attempts == 0 and .llm.cache_hits > 0" st2
'
test_expect 'a local assistant and an HTTP user simulator share one loop in cl-rollout' '
    jq -cn "{match: \"about to start a chat\", reply: ({thought: \"t\", response: \"What is color 2?\"} | tojson)},
            {match: \"role-playing\", reply: ({thought: \"t\", response: \"thanks [[TERMINATE CHAT]]\"} | tojson)}" >script &&
    mock_start --script script && seeds 4 >in &&
    cl-rollout --full -q -Z --no-cache --assistant "local:$M" --assistant-temperature 0 --user openai:u \
        --api-base "$MOCK_URL" --max-turns 3 in >out &&
    test "$(jq -s length out)" = 4 && test "$(mock_count)" = 8 &&
    jq -e "select(.messages[1].content != \"Color 2 is green.\" or .done_reason != \"terminated\")" out; test $? = 4
'
test_expect 'cl-rollout --branch with local roles writes every candidate and future, proactive ones from JSON' '
    seeds 3 >in &&
    cl-rollout --branch -q -Z $LOCAL --assistant-max-tokens 32 -k 2 --samples 2 --window 1 --no-cache --stats st in >out &&
    test "$(jq -s length out)" = 3 && ! jq -e "select(.error)" out >/dev/null &&
    jq -e "select((.candidates | length) != 2 or (.candidates[].futures | length) != 2)" out; test $? = 4 &&
    test "$(jq -s "[.[].candidates[] | select(.mode == \"proact\" and (.content | type) == \"string\")] | length" out)" -ge 1 &&
    jq -e ".rollout.reasks == 0 and .rollout.failed == 0" st &&
    seeds 1 >one && { cl-rollout --branch -q -Z $LOCAL --assistant-max-tokens 32 -k 2 --samples 1 --window 1 \
        --no-cache --response-format none --assistant-mode proact one >raw; test $? = 1; } &&
    jq -e ".error.message | test(\"no JSON object\")" raw
'
test_expect 'a rollout killed midway resumes from the cache to the records of an uninterrupted run' '
    seeds 120 >in && cl-rollout --full -q -Z $LOCAL --max-turns 3 --cache full in >want &&
    { cl-rollout --full -q -Z $LOCAL --max-turns 3 --cache c in >/dev/null & pid=$!; } &&
    sleep 0.5; kill -9 $pid; wait $pid;
    cl-rollout --full -q -Z $LOCAL --max-turns 3 --cache c --stats st in >got && steady want >a && steady got >b &&
    cmp a b &&
    jq -e ".llm.cache_hits > 0" st
'
test_expect 'pipelines/collab.mk and eval.mk run with local: assistants and users (judge: the mock)' '
    mock_start --script "$FIXTURES/pipelines/math-world.jsonl" &&
    cl-seed -q --preset math --limit 3 "$ROOT/examples/math.jsonl" >seeds.zst &&
    make -s -f "$ROOT/pipelines/collab.mk" SEEDS=seeds.zst OUT=run BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        ASSISTANT="local:$M" USER_MODEL="local:$M" JUDGE=openai:j SAMPLES=2 MAX_TURNS=2 \
        ROLLOUT_FLAGS="--user-style userlm --user-max-tokens 16" ASSISTANT_MAX_TOKENS=16 CACHE="$PWD/c" \
        all rows 2>log || { cat log; false; } &&
    test "$(zstd -dc run/conversations.jsonl.zst | wc -l)" = 3 && test "$(zstd -dc run/sft.jsonl.zst | wc -l)" = 3 && test "$(zstd -dc run/rows.jsonl.zst | wc -l)" -ge 3 &&
    mock_stop && mkdir e && cd e && mock_start --script "$FIXTURES/pipelines/eval-world.jsonl" &&
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS=../seeds.zst OUT=ev BIN="$CL_BIN" API_BASE="$MOCK_URL" \
        MODELS="base=local:$M tuned=local:$S/dpo/final" USER_MODEL="local:$M" JUDGE=openai:j BOOTSTRAP=100 \
        MAX_TURNS=2 ROLLOUT_FLAGS="--user-style userlm --user-max-tokens 16" ASSISTANT_MAX_TOKENS=16 \
        CACHE="$PWD/c" 2>log2 || { cat log2; false; } &&
    grep -q tuned ev/report.txt && test "$(zstd -dc ev/tuned/scored.jsonl.zst | wc -l)" = 3
'
test_expect 'a missing model directory or file exits 66 naming it; a malformed one 65; a bad option 78' '
    questions | head -1 >in &&
    { call --assistant local:nowhere --no-cache in 2>err; test $? = 66; } && grep -q nowhere err &&
    mkdir empty && { call --assistant local:empty --no-cache in 2>err; test $? = 66; } && grep -q "empty/config.json" err &&
    cp -r "$M" bad && echo "{" >bad/config.json &&
    { call --assistant local:bad --no-cache in 2>err; test $? = 65; } && grep -q "bad/config.json" err &&
    cp -r "$M" notok && rm notok/tokenizer.json &&
    { call --assistant local:notok --no-cache in 2>err; test $? = 66; } && grep -q "notok/tokenizer.json" err &&
    cp -r "$M" nowt && head -c 100 "$M/model.safetensors" >nowt/model.safetensors &&
    { call --assistant local:nowt --no-cache in 2>err; test $? = 65; } && grep -q "nowt/model.safetensors" err &&
    { call --assistant "local:$M+fast" --no-cache in 2>err; test $? = 78; } && grep -q "+fast" err
'
test_done
