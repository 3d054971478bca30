#!/bin/sh
# cl-rollout: input order, bounded memory with a slow head, interruption and replay.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

test_expect 'records finishing in any order are written in input order' '
    standard_script >script && mock_start --script script &&
    for i in 1 2 3 4 5 6 7 8; do seeds 1 "@delay:$((400 - 50 * i)) " | jq -c ".id = \"r$i\""; done >in &&
    cl-rollout --full $ROLL --max-turns 1 --api-base "$MOCK_URL" --stats st in >out &&
    jq -sr "map(.id) | join(\" \")" out | grep -qx "r1 r2 r3 r4 r5 r6 r7 r8" &&
    jq -se ".[0].usage.latency_s > .[7].usage.latency_s + 0.2" out && jq -e ".rollout.max_held == 8" st
'
test_expect 'a slow record at the head holds at most --buffer records: no later record starts until it is done' '
    standard_script >script && mock_start --script script &&
    { seeds 1 "@delay:1500 "; seeds 300 | tail -n +2; } >in &&
    cl-rollout --full $ROLL --max-turns 1 --buffer 8 --api-base "$MOCK_URL" --stats st in >out &&
    test "$(wc -l <out)" = 300 && jq -sr "map(.id) | .[0], .[299]" out | tr "\n" " " | grep -qx "s1 s300 " &&
    jq -e ".rollout.max_held == 8" st &&
    jq -c "[.t, (.body.messages[0].content | split(\"goal-\") | .[1] // \"0:\" | split(\":\")[0] | tonumber)]" "$MOCK_LOG" >starts &&
    jq -se "(map(select(.[1] == 1))[0][0]) as \$t0 | map(select(.[1] >= 9) | .[0]) | min > \$t0 + 1.4" starts
'
# Latencies are measured, so two live runs differ in usage.latency_s; everything else, and
# every replay of a run, is identical byte for byte.
no_latency() { jq -c "del(.usage.latency_s)" "$@"; }
# wait_calls N: until the mock has seen N requests (so a kill lands in the middle of a run).
wait_calls() { while [ "$(mock_count)" -lt "$1" ]; do sleep 0.02; done; }
# killed_run SIGNAL SEEDS AFTER [OPTIONS]: a reference run with its own cache (ref), then a run
# with cache cb killed with SIGNAL after AFTER requests (part, exit status in $rc, its requests
# in $n1); $R holds the options, the mock log is emptied before the killed run.
killed_run() {
    { rule "helping a user with tasks such as writing" "{\"response\": \"Which kind?\"}"; endless_script; } >script &&
    mock_start --script script --latency 10 --deterministic && seeds "$2" >in &&
    R="-q -Z --assistant openai:asst --user openai:usr --api-base $MOCK_URL --max-inflight 8 ${4:-}" &&
    cl-rollout --branch $R --cache ca in >ref && test "$(mock_count)" = $(($2 * 27)) && : >"$MOCK_LOG" &&
    { cl-rollout --branch $R --cache cb in >part & pid=$!; } && wait_calls "$3" && kill -"$1" $pid &&
    { wait $pid; rc=$?; } && n1=$(mock_count)
}
test_expect 'interrupted with SIGINT: exit 130 and a prefix; the re-run replays the paid calls and completes the same output' '
    killed_run INT 24 250 "--buffer 4" && test "$rc" = 130 && k=$(wc -l <part) &&
    test "$n1" -lt 648 && test "$k" -gt 0 && test "$k" -lt 24 &&
    no_latency part >p1 && no_latency ref | head -n "$k" | cmp - p1 &&
    cl-rollout --branch $R --cache cb --stats st in >full && no_latency full >f1 && no_latency ref | cmp - f1 &&
    test "$(mock_count)" = 648 && test "$(jq .llm.cache_hits st)" = "$n1" &&
    head -n "$k" full | cmp - part &&
    cl-rollout --branch $R --cache cb in >again && cmp full again && test "$(mock_count)" = 648
'
test_expect 'replies arriving in a different order build the same trees' '
    { rule "helping a user with tasks such as writing" "{\"response\": \"Which kind?\"}"; endless_script; } >script &&
    mock_start --script script --latency 1-40 --deterministic && seeds 6 >in &&
    cl-rollout --branch $ROLL --api-base "$MOCK_URL" in >o1 &&
    cl-rollout --branch $ROLL --api-base "$MOCK_URL" in >o2 &&
    ! cmp -s o1 o2 && no_latency o1 >a && no_latency o2 >b && cmp a b &&
    test "$(jq -s "map(.body.seed) | unique | length" "$MOCK_LOG")" = 162
'
test_expect 'killed with SIGKILL: the re-run pays again at most the calls that were in flight and completes the same output' '
    killed_run KILL 12 100 && test "$rc" = 137 && test "$n1" -lt 324 &&
    cl-rollout --branch $R --cache cb --stats st in >full && no_latency full >f1 && no_latency ref | cmp - f1 &&
    n=$(mock_count) && test "$n" -ge 324 && test "$n" -le 332 &&
    test "$(jq .llm.cache_hits st)" -ge $((n1 - 8))
'
# The first signal is sent once a call is in flight (a run that had started none would be done
# before the second), and every call takes 1.5 s, so the second lands while the first waits.
test_expect 'a second signal aborts the calls in flight; what is written is still a valid prefix' '
    { rule "helping a user with tasks such as writing" "{\"response\": \"Which kind?\"}"; endless_script; } >script &&
    mock_start --script script --latency 1500 --deterministic && seeds 20 >in &&
    { cl-rollout --branch $ROLL --api-base "$MOCK_URL" in >part 2>err & pid=$!; } &&
    wait_calls 1 && kill -INT $pid && sleep 0.1 && kill -TERM $pid &&
    { wait $pid; test $? = 130; } && jq -se "all(has(\"candidates\"))" part >/dev/null
'
test_done
