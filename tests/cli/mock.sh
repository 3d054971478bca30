# tests/cli/mock.sh — the loopback mock LLM server (build/tests/mockllm) for CLI tests.
#
#   . "$(dirname "$0")/mock.sh"
#   test_expect '...' '
#       mock_start --latency 20 && llmcall --assistant openai:m --api-base "$MOCK_URL" ... &&
#       test "$(mock_count)" = 3
#   '
#
# mock_start runs inside a test body (a subshell): it starts the server on 127.0.0.1, a free
# port, logging every request to $MOCK_LOG, and arranges for it to be stopped when the body
# ends, whether it passes or not.  mock_stop stops it early (then $MOCK_STATS is written).
mock_start() {
    MOCK_LOG=$PWD/mock.log
    MOCK_STATS=$PWD/mock.stats
    : >"$MOCK_LOG"
    rm -f mock.port # a restart must not read the previous server's port before it listens
    "$CL_TESTBIN/mockllm" --log "$MOCK_LOG" --stats "$MOCK_STATS" "$@" >mock.port 2>mock.err &
    MOCK_PID=$!
    trap 'mock_stop' EXIT
    _i=0
    while ! test -s mock.port; do
        _i=$((_i + 1))
        if [ $_i -gt 100 ] || ! kill -0 $MOCK_PID 2>/dev/null; then
            echo "mockllm did not start:"; cat mock.err; return 1
        fi
        sleep 0.05
    done
    MOCK_PORT=$(cat mock.port)
    MOCK_URL=http://127.0.0.1:$MOCK_PORT/v1
    export MOCK_URL MOCK_LOG MOCK_PORT
}

mock_stop() {
    if [ -n "${MOCK_PID:-}" ]; then
        kill $MOCK_PID 2>/dev/null
        wait $MOCK_PID 2>/dev/null
        MOCK_PID=
    fi
}

# Requests the mock received so far.
mock_count() { wc -l <"$MOCK_LOG" | tr -d ' '; }

# One JSONL record per line: {"id", "messages": [{"role":"user","content": TEXT}]}.
# usage: ask ID TEXT [ID TEXT]...
ask() {
    while [ $# -ge 2 ]; do
        jq -cn --arg id "$1" --arg t "$2" '{id: $id, messages: [{role: "user", content: $t}]}'
        shift 2
    done
}

# N records r1..rN asking q1..qN (awk: one jq per record would cost seconds).
ask_n() {
    awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++)
        printf "{\"id\":\"r%d\",\"messages\":[{\"role\":\"user\",\"content\":\"q%d\"}]}\n", i, i }'
}

command -v jq >/dev/null || skip_all "jq is not installed (scripts/install-deps installs it)"
test -x "$CL_TESTBIN/mockllm" || skip_all "build/tests/mockllm is not built (make check builds it)"
PATH="$CL_TESTBIN:$PATH"
# libcurl honours proxy variables: loopback traffic must not go to a proxy of the CI machine.
no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
export no_proxy NO_PROXY
