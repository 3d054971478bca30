#!/bin/sh
# LLM client: requests as sent, replies as received, roles, specs, conversations.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"

test_expect 'a call returns the reply, finish reason and usage, and sends model, messages and sampling' '
    mock_start && ask r1 "hello there" >in &&
    OPENAI_API_KEY=sk-basic llmcall -q -Z --no-cache --assistant openai:gpt-test --api-base "$MOCK_URL" in >out &&
    jq -e ".reply | startswith(\"mock reply #1\")" out && jq -e ".finish_reason == \"stop\"" out &&
    jq -e ".usage.calls == 1 and .usage.prompt_tokens > 0 and .usage.completion_tokens > 0 and .usage.latency_s > 0" out &&
    jq -e ".path == \"/v1/chat/completions\" and .headers.authorization == \"Bearer sk-basic\"" "$MOCK_LOG" &&
    jq -e ".body == {model: \"gpt-test\", messages: [{role: \"user\", content: \"hello there\"}],
                     temperature: 1, top_p: 1, max_tokens: 256}" "$MOCK_LOG"
'
test_expect 'role flags set temperature, top_p, max_completion_tokens, seed, stop, n, extra members and headers' '
    mock_start && ask r1 "x" >in &&
    llmcall -q -Z --no-cache --assistant openai:o3 --api-base "$MOCK_URL" --assistant-temperature 0.25 \
        --assistant-top-p 0.9 --assistant-max-completion-tokens 50 --assistant-seed 7 --assistant-stop END \
        --assistant-stop STOP --assistant-n 2 --assistant-param top_k=40 \
        --assistant-param "response_format={\"type\":\"json_object\"}" --assistant-header "OpenAI-Project: p1" in >out &&
    jq -e ".body | .temperature == 0.25 and .top_p == 0.9 and .max_completion_tokens == 50 and
          (has(\"max_tokens\") | not) and .seed == 7 and .stop == [\"END\",\"STOP\"] and .n == 2 and
          .top_k == 40 and .response_format.type == \"json_object\"" "$MOCK_LOG" &&
    jq -e ".headers[\"openai-project\"] == \"p1\"" "$MOCK_LOG" &&
    jq -e ".reply | endswith(\"(choice 0)\")" out
'
test_expect 'per-call params override the role and roles have their own base URL and key variables' '
    mock_start && jq -cn "{id: \"a\", role: \"user\", messages: [{role:\"user\",content:\"u\"}], params: {temperature: 0}}" >in &&
    ask b "asst" >>in &&
    OPENAI_API_KEY=sk-main CL_USER_API_KEY=sk-user CL_USER_BASE_URL="$MOCK_URL" \
    llmcall -q -Z --no-cache --assistant openai:big --user openai:small --api-base "$MOCK_URL" in >out &&
    jq -se "map(select(.body.model == \"small\"))[0] | .headers.authorization == \"Bearer sk-user\" and .body.temperature == 0" "$MOCK_LOG" &&
    jq -se "map(select(.body.model == \"big\"))[0] | .headers.authorization == \"Bearer sk-main\"" "$MOCK_LOG"
'
test_expect 'OPENAI_BASE_URL is the default endpoint, and a URL ending in /chat/completions is used as is' '
    mock_start && ask a "x" >in &&
    OPENAI_BASE_URL=$MOCK_URL llmcall -q -Z --no-cache --assistant openai:m in >/dev/null &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "http://127.0.0.1:$MOCK_PORT/chat/completions/" in >/dev/null &&
    jq -se "map(.path) == [\"/v1/chat/completions\", \"/chat/completions\"]" "$MOCK_LOG"
'
test_expect 'a callback can submit the next call: a 3-call conversation grows by two messages a turn' '
    mock_start && ask a "start" b "other" >in &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" --chain 3 in >out &&
    test "$(jq -c ".replies | length" out | tr "\n" " ")" = "3 3 " &&
    jq -se "map(.body.messages | length) | sort == [1,1,3,3,5,5]" "$MOCK_LOG" &&
    jq -se "map(select(.body.messages | length == 5))[0].body.messages[4].content == \"go on (2)\"" "$MOCK_LOG" &&
    jq -e ".usage.calls == 3" out
'
test_expect 'finish_reason length, a null content and a missing usage are reported as such' '
    mock_start && ask a "@fault:length" b "@fault:null" c "@fault:nousage" >in &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" --stats st in >out &&
    jq -se ".[0].finish_reason == \"length\" and .[1].reply == null and .[2].usage.calls_without_usage == 1
            and (.[2].usage | has(\"prompt_tokens\") | not)" out &&
    jq -e ".llm.calls_without_usage == 1" st
'
test_expect 'connections are reused: 60 calls at 4 in flight use at most 4 connections' '
    mock_start --latency 5 && ask_n 60 >in &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" --max-inflight 4 in >out &&
    test "$(wc -l <out)" = 60 && test "$(jq -s "map(.conn) | unique | length" "$MOCK_LOG")" -le 4
'
test_expect 'the mock answers from a script file by matching the request' '
    printf "%s\n" "{\"match\": \"capital of France\", \"reply\": \"Paris.\"}" \
        "{\"match\": \"\\\"role\\\":\\\"user\\\"\", \"reply\": \"(any user turn)\"}" >script &&
    mock_start --script script && ask a "What is the capital of France?" b "Hi" >in &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" in >out &&
    test "$(jq -r .reply out | tr "\n" "|")" = "Paris.|(any user turn)|"
'
test_expect 'a 1 MB reply arrives whole, and so do the short ones after it' '
    awk "BEGIN { printf \"{\\\"match\\\": \\\"big\\\", \\\"reply\\\": \\\"\"; for (i = 0; i < 100000; i++) printf \"0123456789\"; print \"\\\"}\" }" >script &&
    mock_start --script script && ask a big b small c big >in &&
    llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" --max-inflight 1 in >out &&
    jq -se "(.[0].reply | length) == 1000000 and (.[2].reply | length) == 1000000 and
            (.[1].reply | startswith(\"mock reply\"))" out
'
test_expect 'an unknown model scheme is a configuration error (exit 78) naming the known ones' '
    { llmcall -q --no-cache --assistant nosuch:m </dev/null 2>err; test $? = 78; } &&
    grep -q "unknown model scheme .nosuch. (known: openai, anthropic, azure, local)" err &&
    { llmcall -q --no-cache --assistant gpt-4 </dev/null 2>err; test $? = 78; } && grep -q "SCHEME:ARG" err &&
    { llmcall -q --no-cache --assistant openai: </dev/null 2>err; test $? = 78; } && grep -q "needs a model name" err &&
    { llmcall -q --no-cache --assistant openai:m --api-base ftp://x </dev/null 2>err; test $? = 78; } && grep -q "http://" err
'
test_expect 'api.openai.com without a key is a configuration error' '
    { llmcall -q --no-cache --assistant openai:gpt-4o </dev/null 2>err; test $? = 78; } && grep -q "OPENAI_API_KEY" err &&
    { llmcall -q --no-cache --assistant openai:m --assistant-api-key-env MY_KEY --api-base http://127.0.0.1:9/v1 </dev/null 2>err;
      test $? = 78; } && grep -q "MY_KEY" err
'
test_expect 'a call to a role without a model fails with exit 78 and says which flag is missing' '
    jq -cn "{id: \"a\", role: \"judge\", messages: []}" >in &&
    { llmcall -Z --no-cache --assistant openai:m --api-base http://127.0.0.1:9/v1 in >out 2>err; test $? = 78; } &&
    jq -e ".error.message | test(\"role judge has no model: give --judge SPEC\")" out
'
test_expect 'bad flag values are usage errors' '
    { llmcall --assistant-temperature 3 </dev/null 2>err; test $? = 2; } && grep -q "assistant-temperature" err &&
    { llmcall --price 1 </dev/null 2>err; test $? = 2; } && grep -q "IN,OUT" err &&
    { llmcall --assistant-param top_k </dev/null 2>err; test $? = 2; } && grep -q "KEY=JSON" err &&
    { llmcall --no-cache --budget-usd 1 </dev/null 2>err; test $? = 2; } && grep -q "needs --price" err
'
test_expect '--help lists the client flags and every role of the tool' '
    llmcall --help >out && grep -q -- "--max-inflight N" out && grep -q -- "--budget-usd X" out &&
    grep -q -- "--assistant " out && grep -q -- "--judge " out && grep -q -- "--ROLE-max-completion-tokens" out
'
test_done
