#!/bin/sh
# collabllm(7)'s "Online rounds against an endpoint": the user simulator and the judge served
# over HTTP (the loopback mock at API_BASE, openai: specs), the policy in-process (local: with
# an offline adapter, START_ADAPTER), rounds over slices of the states, the per-round
# benchmark and its chart.  Every simulator and judge call goes to the endpoint, every
# candidate is the local policy's.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
. "$(dirname "$0")/mock.sh"
S="$_top/shared"
{ ft_base "$S" 4096 &&
  cl-finetune --model "$S/base/final" --dpo "$S/pairs.jsonl" --lora r=4,alpha=8 --lr 1e-3 --batch 4 --max-steps 2 \
      --run "$S/dpo" -q &&
  cl-seed -q --preset math --limit 12 "$ROOT/examples/math.jsonl" >"$S/train.zst" &&
  cl-seed -q --preset math --limit 2 "$ROOT/examples/math.jsonl" >"$S/test.zst"; } 2>"$_top/base.err" ||
    { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
M="$S/base/final"
command -v gnuplot >/dev/null || skip_all 'gnuplot is not installed (apt-get install gnuplot-nox)'

test_expect 'two rounds from an offline adapter with an HTTP user and judge: the endpoint answers every simulator and judge call, local: every candidate' '
    jq -nc "[\"about to start a chat\", \"chatting with an AI assistant\"][] |
        {match: ., reply: ({thought: \"scripted\", response: \"which colour, please?\"} | tojson)}" >world.jsonl &&
    cat "$FIXTURES/pipelines/online-world.jsonl" >>world.jsonl &&
    mock_start --script world.jsonl &&
    make -s -f "$ROOT/pipelines/online.mk" TASK=math STATES="$S/train.zst" HELDOUT="$S/test.zst" BIN="$CL_BIN" \
        BASE="$M" START_ADAPTER="$S/dpo/final" API_BASE="$MOCK_URL" USER_MODEL=openai:gpt-4o-mini \
        JUDGE=openai:gpt-4o-mini SLICES=2 ROUNDS=2 STEPS=2 FT_FLAGS="--batch 2 --grad-accum 2" \
        SAMPLES=1 MIN_GAP=0 ASSISTANT_MAX_TOKENS=16 BOOTSTRAP=100 OUT=online all plot 2>log || { cat log; false; } &&
    start="local:$M+adapter=$S/dpo/final" && test "$(cat online/round-0/policy)" = "$start" &&
    zstd -dc online/round-1/engine/scored.jsonl.zst | jq -s -e --arg p "$start" \
        "length > 0 and all(.[].candidates[]; .source == \$p and (.mr.mean | type) == \"number\")" &&
    zstd -dc online/round-2/engine/scored.jsonl.zst | jq -s -e --arg p "local:$M+adapter=$PWD/online/round-1/run/final" \
        "length > 0 and all(.[].candidates[]; .source == \$p)" &&
    jq -e "index(\"online/round-1/run/last\") != null" online/round-2/run/args.json &&
    jq -s -e "map(select(.path == \"/v1/chat/completions\")) | length > 0 and all(.[]; .body.model == \"gpt-4o-mini\")" \
        "$MOCK_LOG" &&
    grep -q "final answer to a question is correct" "$MOCK_LOG" && grep -q "collaborated with a user" "$MOCK_LOG" &&
    zstd -dc online/round-1/engine/conversations.jsonl.zst |
        jq -s -e "[.[].messages[1:][] | select(.role == \"user\") | .content] | length > 0 and all(.[]; . == \"which colour, please?\")" &&
    jq -s -e "map(.round) == [0, 1, 2] and all(.[]; .records == 2)" online/rounds.jsonl &&
    test "$(head -c 4 online/rounds.png | tail -c 3)" = PNG
'
test_done
