#!/bin/sh
# The cache knows the model: what GET /models says about it joins the cache key, fetched once per
# run and endpoint; servers that say nothing are named once, and --cache-tag separates runs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

call() { llmcall -q -Z --assistant openai:m --api-base "$MOCK_URL" "$@"; }
# restart ARGS: a new mock on the same port (the same URL), with ARGS
restart() { _p=$MOCK_PORT && mock_stop && mock_start --port $_p "$@"; }

test_expect 'a model re-served under the same URL and name with new weights is asked again; the old one replays' '
    mock_start --model m=/ckpt/v1 && ask_n 3 >in && call --cache c in >o1 && test "$(mock_count)" = 3 &&
    call --cache c in >o2 && test "$(mock_count)" = 3 && cmp o1 o2 &&
    restart --model m=/ckpt/v2 && call --cache c in >o3 && test "$(mock_count)" = 3 &&
    restart --model m=/ckpt/v1 && call --cache c in >o4 && test "$(mock_count)" = 0 && cmp o1 o4
'
test_expect 'the model list is fetched once per run and endpoint, and not at all without a cache' '
    standard_script >script && mock_start --script script --model asst --model usr && seeds 2 >in &&
    cl-rollout --full -q -Z --cache c --assistant openai:asst --user openai:usr --api-base "$MOCK_URL" in >out &&
    mock_stop && jq -e ".models_requests == 1 and .requests == 10" mock.stats &&
    mock_start --script script --model asst --model usr &&
    cl-rollout --full -q -Z --no-cache --assistant openai:asst --user openai:usr --api-base "$MOCK_URL" in >out &&
    mock_stop && jq -e ".models_requests == 0" mock.stats
'
test_expect 'roles that reach one endpoint with different keys each ask for its model list' '
    mock_start --model m && ask_n 1 >in &&
    CL_ASSISTANT_API_KEY=sk-one CL_USER_API_KEY=sk-two llmcall -q -Z --cache c --assistant openai:m --user openai:m \
        --api-base "$MOCK_URL" in >o && mock_stop && jq -e ".models_requests == 2" mock.stats &&
    mock_start --model m &&
    CL_ASSISTANT_API_KEY=sk-one CL_USER_API_KEY=sk-one llmcall -q -Z --cache c --assistant openai:m --user openai:m \
        --api-base "$MOCK_URL" in >o && mock_stop && jq -e ".models_requests == 1" mock.stats
'
test_expect 'a server that says nothing is named once; --cache-tag gives a run answers of its own' '
    mock_start && ask_n 2 >in &&
    llmcall -Z --cache c --assistant openai:m --user openai:m --api-base "$MOCK_URL" in >o1 2>err &&
    test "$(grep -c "GET http://127.0.0.1:$MOCK_PORT/v1/models answered HTTP 404: the server does not say which model it serves.*--cache-tag" err)" = 1 &&
    call --cache c in >o2 2>err && ! test -s err && test "$(mock_count)" = 2 &&
    call --cache c --cache-tag new in >o3 && test "$(mock_count)" = 4 &&
    call --cache c --cache-tag new in >o4 && test "$(mock_count)" = 4 && cmp o3 o4
'
test_expect 'a list without the model is named, and the calls are keyed by URL and name' '
    mock_start --model other && ask_n 1 >in &&
    llmcall -Z --cache c --assistant openai:m --api-base "$MOCK_URL" in >o 2>err &&
    grep -q "role assistant: http://127.0.0.1:$MOCK_PORT/v1/chat/completions lists no model .m." err
'
test_done
