#!/bin/sh
# API keys reach the server and nothing else: not records, errors, caches, stats or logs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"

KEY=sk-cltest-7f3a9c1e5b2d48a6
test_expect 'the key is sent, yet appears in no output, error, cache entry, stats file or rejects file' '
    mock_start --retry-after 0 && ask a ok b "@fault:echokey" c "@fail-first:1:429" d "@fault:400" e "@fault:500" >in &&
    { OPENAI_API_KEY=$KEY llmcall --assistant openai:m --api-base "$MOCK_URL" --cache cache --retries 1 \
        --stats st --rejects rej in >out 2>err; test $? = 78; } &&
    grep -q "Bearer $KEY" "$MOCK_LOG" && test -s rej && test -s err && test -n "$(find cache -type f)" &&
    jq -se "map(select(.id == \"b\"))[0].error.message | test(\"Incorrect API key provided: Bearer \\\\[redacted\\\\]\")" rej &&
    ! grep -r -- "$KEY" out err st rej cache && ! grep -r -- "cltest" out err st rej cache
'
test_expect 'a role key variable and credentials inside the base URL stay secret too' '
    ask a x >in &&
    { CL_JUDGE_API_KEY=$KEY llmcall -Z --assistant openai:m --judge openai:j --cache cache --retries 0 \
        --api-base "http://user:$KEY@127.0.0.1:9/v1?key=$KEY" in >out 2>err; test $? = 69; } &&
    jq -e ".error.message | test(\"POST http://127.0.0.1:9/v1/chat/completions: \")" out &&
    ! grep -r -- "$KEY" out err
'
test_expect 'a key named on the command line by --ROLE-api-key-env is read from that variable' '
    mock_start && ask a x >in && MY_SECRET=$KEY llmcall -q -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" \
        --assistant-api-key-env MY_SECRET in >out && grep -q "Bearer $KEY" "$MOCK_LOG" && ! grep -q "$KEY" out
'
test_expect 'an empty role key variable keeps OPENAI_API_KEY away from the role server' '
    mock_start && ask a x >in && OPENAI_API_KEY=$KEY CL_ASSISTANT_API_KEY= llmcall -q -Z --no-cache \
        --assistant openai:m --api-base "$MOCK_URL" in >out && jq -e "(.headers | has(\"authorization\")) | not" "$MOCK_LOG"
'
test_done
