# tests/cli/mockjudge.sh — cl-judge helpers on top of mock.sh (source lib.sh, mock.sh, this).
#
#   start_mock [mockllm options]   mock_start, then $J = the cl-judge flags that reach it
#   requests                       the request bodies the mock received, one JSON per line
#   request_with TEXT              those whose first message contains TEXT
#
# Scripts are JSONL lines {"match": "substring of the request body", "reply": "..."}; the
# first line that matches answers.
start_mock() {
    # a second start in one test could read the previous port before the new server's
    # redirection truncates the file (a race in mock_start)
    rm -f mock.port
    mock_start "$@" || return 1
    J="--judge openai:judge-model --api-base $MOCK_URL --no-cache --retries 1"
}

requests() { jq -c .body "$MOCK_LOG"; }

request_with() { requests | jq -c --arg m "$1" 'select(.messages[0].content | contains($m))'; }
