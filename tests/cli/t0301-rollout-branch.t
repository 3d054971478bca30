#!/bin/sh
# cl-rollout --branch: K candidates x S futures of w turns, modes, sources, presets.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

proact_rule() { rule 'helping a user with tasks such as writing' '{"thought": "t", "response": "Which kind of poem?"}'; }

test_expect 'a seed gets its opening message, K candidates and S futures of w rounds each (K=2 S=3 w=2: 27 calls)' '
    { proact_rule; endless_script; } >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --branch $ROLL --api-base "$MOCK_URL" in >out &&
    jq -e "(.messages | map({role, content})) == [{role: \"user\", content: \"help me write a poem\"}] and .turn == 0 and .done == false" out &&
    jq -e "[.messages[], .candidates[], .candidates[].futures[].messages[]] | all(.usage.completion_tokens >= 1)" out &&
    jq -se "[.[] | .body.messages[] | keys] | unique == [[\"content\",\"role\"]]" "$MOCK_LOG" &&
    jq -e ".candidates | length == 2 and map(.id) == [\"c0\",\"c1\"]" out &&
    jq -e "[.candidates[].futures | length] == [3,3]" out &&
    jq -e "[.candidates[].futures[].messages | map(.role)] | unique == [[\"user\",\"assistant\",\"user\",\"assistant\"]]" out &&
    jq -e "[.candidates[].futures[].terminated] | unique == [false]" out &&
    jq -e ".candidates | map(.mode) | sort == [\"proact\",\"vanilla\"]" out &&
    jq -e ".candidates | map(select(.mode == \"proact\"))[0].content == \"Which kind of poem?\"" out &&
    jq -e ".candidates | map(.source) == [\"openai:asst\",\"openai:asst\"]" out &&
    jq -e ".usage.calls == 27" out && test "$(mock_count)" = 27 &&
    cl-reward -q -Z --metric tokens --token-scope session --token-roles assistant out >tok &&
    jq -e "[.candidates[].futures[].scores.tokens] | length == 6 and all(. > 0)" tok
'
test_expect 'usage: a JSON-wrapped reply carries its share of the completion (visible_tokens), which --tokens usage counts' '
    { proact_rule; endless_script; } >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --branch $ROLL -k 2 --samples 1 --window 1 --api-base "$MOCK_URL" in >out &&
    jq -e ".candidates | map(select(.mode == \"proact\"))[0].usage | .visible_tokens >= 1 and .visible_tokens < .completion_tokens" out &&
    jq -e ".candidates | map(select(.mode == \"vanilla\"))[0].usage | has(\"visible_tokens\") | not" out &&
    jq -e "[.candidates[].futures[].messages[] | select(.role == \"user\") | .usage | .visible_tokens < .completion_tokens] | length > 0 and all" out &&
    cl-reward -q -Z --metric tokens --tokens usage --token-roles user out >tok &&
    jq -e "[.candidates[].futures[] | .scores.tokens == ([.messages[] | select(.role == \"user\") | .usage.visible_tokens] | add)] | all" tok
'
test_expect 'futures see the candidate in their history and stop early when the simulator terminates' '
    { rule "**Assistant**: mock" "$(user_says "great [[TERMINATE CHAT]]")"; endless_script; } >script &&
    mock_start --script script --deterministic && seeds 1 >in &&
    cl-rollout --branch $ROLL --assistant-mode vanilla --api-base "$MOCK_URL" in >out &&
    jq -e "[.candidates[].futures[]] | length == 6 and all(.terminated and (.messages | length) == 1)" out &&
    jq -e "[.candidates[].futures[].messages[0].content] | unique == [\"great [[TERMINATE CHAT]]\"]" out &&
    test "$(mock_count)" = 9 &&
    jq -se "map(select(.body.model == \"usr\"))[1:] | all(.body.messages[0].content | contains(\"**User**: help me write a poem\n**Assistant**: mock reply\"))" "$MOCK_LOG"
'
test_expect 'a state whose last message is the user'"'"'s branches at once; --window 0 gives candidates without futures' '
    mock_start --deterministic &&
    jq -cn "{id: \"x\", prompt: \"g\", messages: [{role: \"user\", content: \"q\"}, {role: \"assistant\", content: \"a\"}, {role: \"user\", content: \"q2\"}]}" >in &&
    cl-rollout --branch $ROLL -k 3 --window 0 --assistant-mode vanilla --api-base "$MOCK_URL" in >out &&
    jq -e ".turn == 1 and (.candidates | length) == 3 and all(.candidates[]; .futures == [])" out &&
    test "$(mock_count)" = 3 && jq -se "all(.body.messages | length == 3)" "$MOCK_LOG"
'
test_expect 'states at --max-turns, states ending in the marker and done states are finished without calls' '
    mock_start && jq -cn "{id: \"m\", prompt: \"g\", messages: [{role: \"user\", content: \"q\"}, {role: \"assistant\", content: \"a\"}, {role: \"user\", content: \"q2\"}]},
        {id: \"t\", prompt: \"g\", messages: [{role: \"user\", content: \"bye [[TERMINATE CHAT]]\"}]},
        {id: \"d\", done: true, done_reason: \"terminated\"}" >in &&
    cl-rollout --branch $ROLL --max-turns 1 --api-base "$MOCK_URL" in >out &&
    jq -se "map(.done_reason) == [\"max_turns\", \"terminated\", \"terminated\"] and all(.done) and all(has(\"candidates\") | not)" out &&
    test "$(mock_count)" = 0
'
test_expect 'mixing is stratified: K=2 at ratio 0.5 pairs one proact with one vanilla in every state; shares hold at K=4' '
    { proact_rule; endless_script; } >script && mock_start --script script && seeds 200 >in &&
    cl-rollout --branch $ROLL --window 0 --api-base "$MOCK_URL" in >o2 &&
    jq -se "all(.candidates | map(.mode) | sort == [\"proact\",\"vanilla\"])" o2 &&
    cl-rollout --branch $ROLL --window 0 -k 4 --proact-ratio 0.25 --system-prompt-ratio 0.5 --api-base "$MOCK_URL" in >o4 &&
    jq -se "all(.candidates | map(select(.mode == \"proact\")) | length == 1)" o4 &&
    jq -se "all(.candidates | map(select(.mode == \"system\")) | length | . == 1 or . == 2)" o4 &&
    jq -se "[.[].candidates[] | select(.mode == \"system\")] | length | . > 260 and . < 340" o4 &&
    jq -se "map(.candidates | map(.mode)) | unique | length > 2" o4
'
test_expect 'explicit --candidate sources set K, each with its model and mode; the future assistant has its own role' '
    { proact_rule; endless_script; } >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --branch $ROLL --samples 1 --window 1 --candidate openai:big:proact --candidate assistant \
        --candidate openai:small:system --future-assistant openai:fut --api-base "$MOCK_URL" in >out &&
    jq -e ".candidates | map([.source, .mode]) == [[\"openai:big\",\"proact\"],[\"openai:asst\",\"vanilla\"],[\"openai:small\",\"system\"]]" out &&
    jq -se "map(.body.model) | sort == [\"asst\",\"big\",\"fut\",\"fut\",\"fut\",\"small\",\"usr\",\"usr\",\"usr\",\"usr\"]" "$MOCK_LOG" &&
    jq -se "map(select(.body.model == \"small\"))[0].body.messages[0].role == \"system\"" "$MOCK_LOG" &&
    jq -se "map(select(.body.model == \"fut\")) | all(.body.messages[0].role == \"user\")" "$MOCK_LOG" &&
    jq -se "all(.model_members == 1)" "$MOCK_LOG"
'
test_expect 'every call has its own sample seed; the same --seed replays from the cache and a new one draws new samples' '
    { proact_rule; endless_script; } >script && mock_start --script script && seeds 2 >in &&
    R="-q -Z --cache c --assistant openai:asst --user openai:usr --api-base $MOCK_URL --samples 2 --window 1" &&
    cl-rollout --branch $R in >o1 && test "$(mock_count)" = 22 &&
    test "$(jq -s "map(.body.seed) | unique | length" "$MOCK_LOG")" = 22 &&
    cl-rollout --branch $R in >o2 && test "$(mock_count)" = 22 && cmp o1 o2 &&
    cl-rollout --branch $R --seed 7 in >o3 && test "$(mock_count)" = 44 && ! cmp -s o1 o3 &&
    : >"$MOCK_LOG" && cl-rollout --branch $R --seed 8 --no-sample-seed --user-seed 5 in >o4 &&
    jq -se "map(select(.body.model == \"asst\")) | all(has(\"seed\") | not)" "$MOCK_LOG" &&
    jq -se "map(select(.body.model == \"usr\")) | all(.body.seed == 5)" "$MOCK_LOG"
'
test_expect 'the paper preset sets top-p 0.9 and 8 turns unless given explicitly, whatever the order' '
    endless_script >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --assistant-mode vanilla --preset paper --api-base "$MOCK_URL" in >out &&
    jq -e ".turn == 8" out && jq -se "map(select(.body.model == \"asst\")) | all(.body.top_p == 0.9)" "$MOCK_LOG" &&
    : >"$MOCK_LOG" &&
    cl-rollout --full $ROLL --assistant-top-p 0.5 --max-turns 2 --preset paper --api-base "$MOCK_URL" in >out &&
    jq -e ".turn == 2" out && jq -se "map(select(.body.model == \"asst\")) | all(.body.top_p == 0.5)" "$MOCK_LOG" &&
    { cl-rollout --full --preset nope </dev/null 2>err; test $? = 2; }
'
test_done
