# tests/cli/mockjudge.sh — a loopback mock judge for cl-judge tests (sourced after lib.sh).
#
#   start_mock [mockllm options]   starts build/tests/mockllm on 127.0.0.1 in the test's
#                                  directory with --log log.jsonl, stops it when the test body
#                                  exits, and sets $J to the cl-judge flags that reach it
#   requests                       the request bodies the mock received, one JSON per line
#
# Scripts are JSONL lines {"match": "substring of the request body", "reply": "..."}; the
# first line that matches answers.
start_mock() {
    rm -f port
    "$CL_TESTBIN/mockllm" --log log.jsonl "$@" >port 2>mock.err &
    MOCK_PID=$!
    trap 'kill $MOCK_PID 2>/dev/null; wait $MOCK_PID 2>/dev/null' EXIT
    _i=0
    until test -s port || [ $_i -ge 200 ]; do sleep 0.05; _i=$((_i + 1)); done
    test -s port || { echo "mockllm did not start"; cat mock.err; return 1; }
    J="--judge openai:judge-model --api-base http://127.0.0.1:$(cat port)/v1 --no-cache --retries 1"
}

requests() { jq -c .body log.jsonl; }

# The request bodies whose first message contains $1.
request_with() { requests | jq -c --arg m "$1" 'select(.messages[0].content | contains($m))'; }
