#!/bin/sh
# LLM client under faults: what is retried, how long it waits, and what reaches the record.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"

# llmcall against the mock with the flags every test here shares
call() { llmcall -Z --no-cache --show-cached --assistant openai:m --api-base "$MOCK_URL" "$@"; }

test_expect '429 with Retry-After: 1 is retried after the second the server asked for' '
    mock_start --retry-after 1 && ask a "@fail-first:2:429" >in &&
    t0=$(date +%s.%N) && call -q in >out && t1=$(date +%s.%N) &&
    jq -e ".attempts == 3 and (.reply | startswith(\"mock reply\"))" out &&
    awk -v a="$t0" -v b="$t1" "BEGIN { exit !(b - a >= 2.0 && b - a < 15) }" &&
    jq -se "map(.fault) == [\"429\",\"429\",\"none\"] and (.[2].t - .[1].t >= 0.95)" "$MOCK_LOG"
'
test_expect 'server errors, resets, early closes, short bodies, bad JSON and replies without choices are retried' '
    mock_start && ask a "@fail-first:2:500" b "@fail-first:1:503" c "@fail-first:1:reset" d "@fail-first:1:close" \
        e "@fail-first:1:truncate" f "@fail-first:1:badjson" g "@fail-first:1:nochoices" >in &&
    call -q --stats st in >out &&
    test "$(jq -c .attempts out | tr "\n" " ")" = "3 2 2 2 2 2 2 " &&
    jq -se "all(.[]; .reply | startswith(\"mock reply\"))" out &&
    jq -e ".llm | .retries == 8 and .http_5xx == 3 and .transport_errors == 3 and .bad_bodies == 2 and .failed == 0" st
'
test_expect 'an attempt that gets no reply within --timeout is retried' '
    mock_start && ask a "@fail-first:1:stall" >in &&
    call -q --timeout 0.8 --stats st in >out && jq -e ".attempts == 2" out && jq -e ".llm.timeouts == 1" st
'
test_expect 'a reply that stops arriving halfway is cut by --stall-timeout and retried' '
    mock_start && ask a "@fail-first:1:midstall" >in &&
    t0=$(date +%s.%N) && call -q --stall-timeout 0.5 --stats st in >out && t1=$(date +%s.%N) &&
    jq -e ".attempts == 2" out && jq -e ".llm.timeouts == 1" st &&
    awk -v a="$t0" -v b="$t1" "BEGIN { exit !(b - a < 15) }"
'
test_expect 'retries are bounded: the final error reaches the record and the exit status is 69 (unavailable)' '
    mock_start && ask a "@fault:500" b "fine" >in &&
    { call --retries 2 in >out 2>err; test $? = 69; } &&
    jq -se ".[0].error.message | test(\"HTTP 500 .*server had an error.*3 attempts\")" out &&
    jq -se ".[1].reply | startswith(\"mock reply\")" out && grep -q ":1: role assistant: HTTP 500" err &&
    test "$(jq -s "map(select(.fault == \"500\")) | length" "$MOCK_LOG")" = 3
'
test_expect '429s that outlast the retries fail the record and the run exits 75 (temporary failure)' '
    mock_start --retry-after 0 && ask a "@fault:429" b "fine" >in &&
    { call --retries 1 in >out 2>err; test $? = 75; } &&
    jq -se ".[0].error.message | test(\"HTTP 429.*2 attempts\")" out && jq -se ".[1].reply | startswith(\"mock reply\")" out
'
test_expect 'a 429 that outlasts the retries and a 500 that does too: 75 ranks above 69' '
    mock_start --retry-after 0 && ask a "@fault:429" b "@fault:500" >in &&
    { call --retries 1 in >out 2>err; test $? = 75; }
'
test_expect 'connections reset after the request: every request the server saw is an attempt the client counted and backed off' '
    mock_start --fault reset=0.3 --seed 3 && ask_n 100 >in &&
    call -q --stats st in >out &&
    test "$(jq -s "map(select(.reply)) | length" out)" = 100 &&
    test "$(jq .llm.attempts st)" = "$(mock_count)" &&
    test "$(jq .llm.retries st)" = "$(jq -s "map(select(.fault == \"reset\")) | length" "$MOCK_LOG")"
'
test_expect 'insufficient_quota is not retried, fails the role fast and exits 69' '
    mock_start && ask a "@fault:quota" >in && ask_n 20 >>in &&
    { call -q --max-inflight 1 in >out 2>err; test $? = 69; } &&
    test "$(mock_count)" = 1 && test "$(jq -s "map(select(.error)) | length" out)" = 21 &&
    jq -se ".[0].error.message | test(\"insufficient_quota\")" out
'
test_expect 'a 400 (context too long) fails only that call, without retries' '
    mock_start && ask a "@fault:400" b "ok" >in &&
    { call -q in >out; test $? = 1; } && test "$(mock_count)" = 2 &&
    jq -se ".[0].error.message | test(\"maximum context length.*context_length_exceeded\")" out &&
    jq -se ".[1].reply != null" out
'
test_expect 'a 401 (bad key) stops every call of the role: exit 78' '
    mock_start && ask a "@fault:401" b "x" c "y" >in &&
    { call -q --max-inflight 1 in >out; test $? = 78; } && test "$(mock_count)" = 1 &&
    test "$(jq -s "map(select(.error.message | test(\"HTTP 401\"))) | length" out)" = 3
'
test_expect 'a 404 (no such model) is a configuration error too' '
    mock_start && ask a "@fault:404" b "x" >in && { call -q --max-inflight 1 in >out; test $? = 78; } &&
    test "$(mock_count)" = 1 && jq -se ".[1].error.message | test(\"model_not_found\")" out
'
test_expect 'x-should-retry: false is obeyed' '
    mock_start && ask a "@fault:noretry" >in && { call -q in >out; test $? = 1; } && test "$(mock_count)" = 1
'
test_expect 'a server that is not there: retried, then the error names the URL and the exit status is 69' '
    ask a x >in && { llmcall -Z --no-cache --assistant openai:m --api-base http://127.0.0.1:9/v1 --retries 1 in >out 2>err;
    test $? = 69; } && jq -e ".error.message | test(\"POST http://127.0.0.1:9/v1/chat/completions: .*2 attempts\")" out
'
test_expect '--connect-timeout gives up on a server whose accept queue is full, retries, then exits 69' '
    cat >noaccept.py <<"PY" &&
import select, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
port = s.getsockname()[1]
# Fill the accept queue until a connect hangs: its SYN was dropped, so every later one is too.
# Probing rather than counting holds on a loaded machine, where handshakes finish late.
fill = []
while True:
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    fill.append(c)
    if not select.select([], [c], [], 1.0)[1]:
        break
    if len(fill) > 64:
        sys.exit("the accept queue never filled")
print(port, flush=True)
time.sleep(60)
PY
    { python3 noaccept.py >na.port & np=$!; } && trap "kill $np" EXIT &&
    until test -s na.port || ! kill -0 $np; do sleep 0.05; done && ask a x >in &&
    { llmcall -Z --no-cache --assistant openai:m --api-base "http://127.0.0.1:$(cat na.port)/v1" \
        --connect-timeout 0.5 --retries 1 --stats st in >out 2>err; test $? = 69; } &&
    jq -e ".error.message | test(\"after [0-9]+ ms: Timeout was reached .curl 28. .2 attempts\")" out &&
    jq -e ".llm.timeouts == 2" st
'
test_expect 'a Retry-After beyond the cap ends the call (exit 75, try later) instead of sleeping for it' '
    mock_start --retry-after 3600 && ask a "@fault:429" >in &&
    { call -q in >out; test $? = 75; } && jq -e ".error.message | test(\"retry after 3600 s\")" out
'
test_expect '10% random 429s and 5% 500s: every one of 300 calls succeeds' '
    mock_start --fault 429=0.1 --fault 500=0.05 --retry-after 0 --seed 3 && ask_n 300 >in &&
    call -q --stats st in >out && test "$(jq -s "map(select(.reply)) | length" out)" = 300 &&
    jq -e ".llm.retries > 20 and .llm.failed == 0" st
'
test_done
