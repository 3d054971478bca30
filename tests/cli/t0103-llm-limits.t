#!/bin/sh
# LLM client limits: calls in flight, rates, budget, interruption, accounting.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"

call() { llmcall -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" "$@"; }

test_expect 'the server never sees more than --max-inflight calls at once, and sees that many' '
    mock_start --latency 50 && ask_n 100 >in && call -q --max-inflight 7 in >out && mock_stop &&
    jq -e ".max_concurrent == 7" "$MOCK_STATS" && test "$(jq -s "map(.concurrent) | max" "$MOCK_LOG")" -le 7
'
test_expect 'the default is 64 in flight' '
    mock_start --latency 100 && ask_n 200 >in && call -q in >out && mock_stop && jq -e ".max_concurrent == 64" "$MOCK_STATS"
'
test_expect 'retries waiting to go again do not count as in flight, and never exceed the limit either' '
    mock_start --latency 20 --fault 503=0.3 --seed 5 && ask_n 100 >in && call -q --max-inflight 5 --retries 10 in >out &&
    mock_stop && jq -e ".max_concurrent <= 5" "$MOCK_STATS" && test "$(jq -s "map(select(.reply)) | length" out)" = 100
'
test_expect '--rpm spaces calls out: 25 calls at 600/minute take about 1.5 s' '
    mock_start && ask_n 25 >in && t0=$(date +%s.%N) && call -q --rpm 600 in >out && t1=$(date +%s.%N) &&
    awk -v a="$t0" -v b="$t1" "BEGIN { exit !(b - a >= 1.3 && b - a < 10) }" && test "$(wc -l <out)" = 25
'
test_expect '--tpm holds calls back once the token allowance is spent' '
    mock_start && ask_n 12 >in && t0=$(date +%s.%N) && call -q --tpm 6000 --assistant-max-tokens 40 in >out &&
    t1=$(date +%s.%N) && awk -v a="$t0" -v b="$t1" "BEGIN { exit !(b - a >= 0.8) }" && test "$(wc -l <out)" = 12
'
test_expect '--budget-usd stops sending new calls once spent: exit 75, the rest marked, nothing lost' '
    mock_start && ask_n 30 >in &&
    { call --max-inflight 1 --price 1000000,1000000 --budget-usd 100 --stats st in >out 2>err; test $? = 75; } &&
    n=$(mock_count) && test "$n" -ge 3 && test "$n" -le 5 && test "$(wc -l <out)" = 30 &&
    test "$(jq -s "map(select(.error and (.error.message | test(\"budget reached\")))) | length" out)" = $((30 - n)) &&
    jq -e ".llm.stopped == \"budget reached\" and .llm.cost_usd >= 100" st && grep -q "stopped: budget reached" err
'
test_expect 'SIGINT stops admitting calls, lets those in flight finish, reports every record and exits 130' '
    mock_start --latency 400 && ask_n 40 >in &&
    { llmcall -Z --assistant openai:m --api-base "$MOCK_URL" --max-inflight 4 --cache c in >out 2>err & pid=$!;
      until [ "$(mock_count)" -ge 4 ] || ! kill -0 $pid; do sleep 0.05; done; sleep 0.2; kill -INT $pid; wait $pid; test $? = 130; } &&
    test "$(wc -l <out)" = 40 && n=$(mock_count) && test "$n" -le 12 &&
    test "$(jq -s "map(select(.reply)) | length" out)" = "$n" &&
    jq -se "map(select(.error)) | all(.[]; .error.message | test(\"interrupted\"))" out &&
    test "$(cat c/llm/pack-*.clc | grep -c "^cl-llm-cache 2 ")" = "$n"
'
test_expect 'a second SIGINT aborts the calls in flight too' '
    mock_start --latency 5000 && ask_n 8 >in &&
    { llmcall -Z --no-cache --assistant openai:m --api-base "$MOCK_URL" --max-inflight 4 in >out 2>err & pid=$!;
      until [ "$(mock_count)" -ge 4 ] || ! kill -0 $pid; do sleep 0.05; done; kill -INT $pid; sleep 0.3; kill -INT $pid; wait $pid; test $? = 130; } &&
    test "$(wc -l <out)" = 8 && test "$(jq -s "map(select(.error)) | length" out)" = 8
'
test_expect '--stats and the summary line report calls, tokens, cost and latency' '
    mock_start --latency 10 && ask_n 10 >in && call --price 2.5,10 --stats st in >out 2>err &&
    jq -e ".llm | .calls == 10 and .ok == 10 and .prompt_tokens > 0 and .completion_tokens > 0 and .cost_usd > 0
          and .latency_p50_s >= 0.009 and .latency_max_s >= .latency_p50_s and .max_inflight_seen == 10" st &&
    grep -Eq "llm: 10 calls \(0 cached, 0 failed\), 0 retries, [0-9]+\+[0-9]+ tokens, \\\$0\.[0-9]+" err &&
    jq -se "all(.[]; .usage.cost_usd > 0)" out >/dev/null
'
test_done
