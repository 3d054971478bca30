#!/bin/sh
# The anthropic: and azure: schemes over real loopback HTTP against the mock, which checks their
# requests as Anthropic's Messages API and Azure OpenAI do: request shapes, replies, usage and
# cost, retries, per-record errors, bad bodies, secrets, the cache, and the tools using them.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

AKEY=sk-ant-cltest-5d1e9b7a3c
ZKEY=az-cltest-88c4e2f0a6
# an anthropic: call against the mock (the base given without /v1, as Anthropic's own is)
acall() { ANTHROPIC_API_KEY=$AKEY ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT llmcall -Z "$@"; }
zcall() { AZURE_OPENAI_API_KEY=$ZKEY AZURE_OPENAI_ENDPOINT=http://127.0.0.1:$MOCK_PORT/ llmcall -Z "$@"; }
# three messages: system, then two user turns in a row
sysask() {
    jq -cn --arg id "$1" --arg t "$2" '{id: $id, messages: [{role: "system", content: "be brief"},
        {role: "user", content: $t}, {role: "system", content: "and kind"}, {role: "user", content: "thanks"}]}'
}

test_expect 'anthropic: POSTs the Messages API: key and version headers, system field, merged turns, renamed parameters' '
    mock_start && sysask a "hello" >in &&
    acall -q --no-cache --assistant anthropic:claude-3-5-sonnet-20240620 --assistant-stop END --assistant-seed 9 \
        --assistant-param top_k=5 in >out &&
    jq -e ".path == \"/v1/messages\" and .rejected == null" "$MOCK_LOG" &&
    jq -e ".headers | .[\"x-api-key\"] == \"$AKEY\" and .[\"anthropic-version\"] == \"2023-06-01\" and
          .[\"content-type\"] == \"application/json\" and (has(\"authorization\") | not)" "$MOCK_LOG" &&
    jq -e ".body == {model: \"claude-3-5-sonnet-20240620\", max_tokens: 256, system: \"be brief\n\nand kind\",
                     messages: [{role: \"user\", content: \"hello\n\nthanks\"}], temperature: 1,
                     stop_sequences: [\"END\"], top_k: 5}" "$MOCK_LOG"
'
test_expect 'anthropic: the text blocks are joined, stop_reason and usage read, the list price gives the cost' '
    mock_start && ask a "hi" b "@fault:length" >in &&
    acall -q --no-cache --assistant anthropic:claude-3-5-sonnet-20240620 --stats st in >out &&
    jq -se ".[0].reply | test(\"^mock reply #[0-9]+ h=[0-9a-f]{8}$\")" out &&
    jq -se "map(.finish_reason) == [\"stop\", \"length\"]" out &&
    jq -se ".[0].usage | .calls == 1 and .prompt_tokens > 0 and .completion_tokens > 0 and
            (.cost_usd * 1e9 | round) == ((.prompt_tokens * 3 + .completion_tokens * 15) * 1e3 | round)" out &&
    jq -e ".llm.cost_usd > 0 and .llm.prompt_tokens > 0" st &&
    acall -q --no-cache --assistant anthropic:claude-3-5-sonnet-20240620 --price 1,2 in >out2 &&
    jq -se ".[0].usage | (.cost_usd * 1e9 | round) == ((.prompt_tokens * 1 + .completion_tokens * 2) * 1e3 | round)" out2 &&
    acall -q --no-cache --assistant anthropic:claude-unlisted in >out3 && jq -se "all(.usage | has(\"cost_usd\") | not)" out3
'
test_expect 'anthropic: --budget-usd works from the list price alone, and stops the run (75)' '
    mock_start && ask_n 6 >in &&
    { acall -q --no-cache --max-inflight 1 --assistant anthropic:claude-3-opus-20240229 --budget-usd 0.001 in >out; test $? = 75; } &&
    jq -se "(.[0].reply != null) and (.[5].error.message | contains(\"budget reached\"))" out &&
    test "$(mock_count)" -lt 6
'
test_expect 'anthropic: 429 and 529 are retried after the server'"'"'s Retry-After, and counted' '
    mock_start --retry-after 1 && ask a "@fail-first:1:429" b "@fail-first:1:overloaded" >in &&
    acall -q --no-cache --assistant anthropic:claude-x --stats st in >out &&
    jq -se "all(has(\"reply\"))" out && test "$(mock_count)" = 4 &&
    jq -e ".llm.http_429 == 1 and .llm.http_5xx == 1 and .llm.retries == 2 and .llm.failed == 0" st &&
    jq -se "[.[] | select(.body.messages[0].content == \"@fail-first:1:overloaded\") | .t] | .[1] - .[0] >= 0.9" "$MOCK_LOG" &&
    jq -se "[.[] | select(.body.messages[0].content == \"@fail-first:1:429\") | .t] | .[1] - .[0] >= 0.9" "$MOCK_LOG"
'
test_expect 'anthropic: a 400 fails its record only, with the API'"'"'s message, once; exit 1' '
    mock_start && ask a "@fault:400" b "fine" >in &&
    { acall -q --no-cache --assistant anthropic:claude-x in >out 2>err; test $? = 1; } &&
    jq -se ".[0].error.message | test(\"HTTP 400 from http://127.0.0.1:[0-9]+/v1/messages: prompt is too long: 210000 tokens > 200000 maximum \\\\(invalid_request_error\\\\) \\\\(1 attempt\\\\)\")" out &&
    jq -se ".[1].reply != null" out && test "$(mock_count)" = 2
'
test_expect 'anthropic: what the Messages API cannot take fails that record before sending (65 per call, exit 1)' '
    mock_start && jq -cn "{id: \"t\", messages: [{role: \"user\", content: \"x\"}, {role: \"tool\", content: \"y\"}]}" >in &&
    jq -cn "{id: \"s\", messages: [{role: \"system\", content: \"only a system prompt\"}]}" >>in && ask ok "x" >>in &&
    { acall -q --no-cache --assistant anthropic:claude-x in >out; test $? = 1; } &&
    jq -se ".[0].error.message | test(\"message 1 has role .tool., which the Messages API does not take\")" out &&
    jq -se ".[1].error.message | contains(\"no user or assistant message\")" out &&
    jq -se ".[2].reply != null" out && test "$(mock_count)" = 1 &&
    { acall -q --no-cache --assistant anthropic:claude-x --assistant-n 2 in >out2; test $? = 1; } &&
    jq -se ".[2].error.message | contains(\"n > 1: the Messages API gives one completion per call\")" out2 &&
    test "$(mock_count)" = 1
'
test_expect 'anthropic: a missing key is refused by the server (401): the role stops, exit 78' '
    mock_start && ask_n 3 >in &&
    { ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT llmcall -q -Z --no-cache --max-inflight 1 \
        --assistant anthropic:claude-x in >out 2>err; test $? = 78; } &&
    jq -se "all(.error.message | contains(\"x-api-key header is required\"))" out && test "$(mock_count)" = 1 &&
    { llmcall -q -Z --no-cache --assistant anthropic:claude-x in 2>err; test $? = 78; } &&
    grep -q "no API key: set ANTHROPIC_API_KEY" err
'
test_expect 'anthropic: a garbage body or one without content is retried, then the run reports 69' '
    mock_start && ask a "@fault:badjson" b "@fault:nochoices" >in &&
    { acall -q --no-cache --retries 1 --assistant anthropic:claude-x --stats st in >out; test $? = 69; } &&
    jq -se ".[0].error.message | contains(\"body is not JSON\")" out &&
    jq -se ".[1].error.message | contains(\"no content in the reply\")" out &&
    jq -e ".llm.bad_bodies == 4 and .llm.attempts == 4" st
'
test_expect 'the keys of anthropic: and azure: appear in no output, error, stats or cache file' '
    mock_start --retry-after 0 && ask a ok b "@fault:echokey" c "@fail-first:1:overloaded" d "@fault:400" >in &&
    { acall --assistant anthropic:claude-x --cache cache --retries 1 --stats st in >out 2>err; test $? = 78; } &&
    { zcall --assistant azure:dep --cache cache --retries 1 --stats st2 in >out2 2>err2; test $? = 78; } &&
    grep -q "$AKEY" "$MOCK_LOG" && grep -q "$ZKEY" "$MOCK_LOG" && test -n "$(find cache -type f)" &&
    jq -se "map(select(.id == \"b\"))[0].error.message | contains(\"Incorrect API key provided: [redacted]\")" out &&
    jq -se "map(select(.id == \"b\"))[0].error.message | contains(\"Incorrect API key provided: [redacted]\")" out2 &&
    ! grep -r -- "cltest" out err st out2 err2 st2 cache
'
test_expect 'azure: POSTs to the deployment with api-key and api-version; the body and reply are Chat Completions' '
    mock_start && ask a "hi" >in &&
    zcall -q --no-cache --assistant azure:gpt4o-dep in >out &&
    OPENAI_API_VERSION=2025-01-01-preview zcall -q --no-cache --assistant azure:gpt4o-dep in >out2 &&
    jq -se "map(.path) == [\"/openai/deployments/gpt4o-dep/chat/completions?api-version=2024-10-21\",
                           \"/openai/deployments/gpt4o-dep/chat/completions?api-version=2025-01-01-preview\"]" "$MOCK_LOG" &&
    jq -se "all(.headers | .[\"api-key\"] == \"$ZKEY\" and (has(\"authorization\") | not)) and all(.rejected == null)" "$MOCK_LOG" &&
    jq -se ".[0].body == {model: \"gpt4o-dep\", messages: [{role: \"user\", content: \"hi\"}], temperature: 1, top_p: 1, max_tokens: 256}" "$MOCK_LOG" &&
    jq -e ".reply | startswith(\"mock reply\")" out && jq -e ".usage.prompt_tokens > 0 and .finish_reason == \"stop\"" out
'
test_expect 'azure: the endpoint, key and deployment name are checked when the tool starts (78)' '
    ask a x >in &&
    { AZURE_OPENAI_API_KEY=k llmcall -q -Z --no-cache --assistant azure:dep in 2>err; test $? = 78; } &&
    grep -q "needs an endpoint: set AZURE_OPENAI_ENDPOINT" err &&
    { AZURE_OPENAI_ENDPOINT=http://127.0.0.1:9 llmcall -q -Z --no-cache --assistant azure:dep in 2>err; test $? = 78; } &&
    grep -q "no API key: set AZURE_OPENAI_API_KEY" err &&
    { AZURE_OPENAI_API_KEY=k AZURE_OPENAI_ENDPOINT=http://127.0.0.1:9 llmcall -q -Z --no-cache --assistant "azure:a/b" in 2>err;
      test $? = 78; } && grep -q "needs a deployment name" err &&
    { AZURE_OPENAI_API_KEY=k CL_ASSISTANT_BASE_URL=ftp://x llmcall -q -Z --no-cache --assistant azure:dep in 2>err; test $? = 78; } &&
    grep -q "must start with http" err
'
test_expect 'one model name on three schemes and one server keeps three cache entries; each replays its own' '
    mock_start && ask a "same prompt" >in &&
    llmcall -q -Z --cache c --assistant openai:m --api-base "$MOCK_URL" in >o1 &&
    acall -q --cache c --assistant anthropic:m in >a1 && zcall -q --cache c --assistant azure:m in >z1 &&
    test "$(mock_count)" = 3 &&
    llmcall -q -Z --cache c --assistant openai:m --api-base "$MOCK_URL" in >o2 &&
    acall -q --cache c --assistant anthropic:m in >a2 && zcall -q --cache c --assistant azure:m in >z2 &&
    test "$(mock_count)" = 3 && cmp o1 o2 && cmp a1 a2 && cmp z1 z2 &&
    test "$(jq -r .reply o1)" != "$(jq -r .reply a1)" && test "$(jq -r .reply a1)" != "$(jq -r .reply z1)"
'
test_expect '--api-base serves openai: roles only: an anthropic: judge beside them goes to its own endpoint' '
    mock_start && ask a x >in &&
    { ANTHROPIC_API_KEY=$AKEY llmcall -q -Z --no-cache --assistant anthropic:claude-x --api-base "$MOCK_URL" \
        --connect-timeout 1 --retries 0 --assistant-api-base http://127.0.0.1:9 in >out; test $? = 69; } &&
    test "$(mock_count)" = 0 && jq -e ".error.message | contains(\"POST http://127.0.0.1:9/v1/messages\")" out
'
test_expect 'cl-judge with an anthropic: judge and cl-rollout with an anthropic: user simulator' '
    echo "{\"match\": \"any number from 0 to 1\", \"reply\": \"{\\\"thought\\\": \\\"ok\\\", \\\"interactivity\\\": 0.5}\"}" >s.jsonl &&
    standard_script >>s.jsonl && mock_start --script s.jsonl &&
    ANTHROPIC_API_KEY=$AKEY cl-judge -Z --no-cache --judge anthropic:claude-3-5-sonnet-20240620 \
        --judge-api-base "http://127.0.0.1:$MOCK_PORT/v1" --interactivity "$FIXTURES/judge/full.jsonl" >out &&
    jq -e ".scores.interactivity == 0.5 and .judge_usage.calls == 1 and .judge_usage.cost_usd > 0" out &&
    jq -se ".[0] | .path == \"/v1/messages\" and .body.temperature == 0 and .body.max_tokens == 2048 and .rejected == null" "$MOCK_LOG" &&
    : >"$MOCK_LOG" && seeds 1 >in &&
    ANTHROPIC_API_KEY=$AKEY CL_USER_BASE_URL=http://127.0.0.1:$MOCK_PORT cl-rollout --full -q -Z --no-cache \
        --assistant openai:asst --user anthropic:claude-usr --api-base "$MOCK_URL" in >r &&
    jq -e ".done_reason == \"terminated\" and .turn == 2 and .usage.calls == 5" r &&
    jq -se "map(select(.path == \"/v1/messages\")) | length == 3 and all(.body.model == \"claude-usr\" and .rejected == null)" "$MOCK_LOG" &&
    jq -se "map(select(.path == \"/v1/chat/completions\")) | length == 2" "$MOCK_LOG"
'
test_expect 'the pipelines'"'"' default judge is the paper'"'"'s Claude through the Messages API, with ANTHROPIC_API_KEY' '
    mock_start --script "$FIXTURES/pipelines/math-world.jsonl" &&
    cl-seed -q --preset math --limit 1 "$ROOT/examples/math.jsonl" >seeds.zst &&
    ANTHROPIC_API_KEY=$AKEY ANTHROPIC_BASE_URL=http://127.0.0.1:$MOCK_PORT make -s -f "$ROOT/pipelines/collab.mk" \
        SEEDS=seeds.zst OUT=run BIN="$CL_BIN" API_BASE="$MOCK_URL" ASSISTANT=openai:a USER_MODEL=openai:u \
        SAMPLES=1 MAX_TURNS=1 2>err &&
    jq -se "map(select(.path == \"/v1/messages\")) | length > 0 and
            all(.body.model == \"claude-3-5-sonnet-20240620\" and .headers[\"x-api-key\"] == \"$AKEY\" and .rejected == null)" "$MOCK_LOG" &&
    jq -se "all(.path == \"/v1/messages\" or .body.model != \"claude-3-5-sonnet-20240620\")" "$MOCK_LOG" &&
    test -s run/dpo.jsonl.zst && ! grep -r -- "$AKEY" run err
'
test_done
