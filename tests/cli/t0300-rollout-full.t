#!/bin/sh
# cl-rollout --full: complete conversations, roles, modes and prompts, against the mock server.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

test_expect 'the simulator writes the opening message from the hidden goal, then the conversation ends at the marker' '
    standard_script >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" in >out &&
    jq -e ".messages | map(.role) == [\"user\",\"assistant\",\"user\",\"assistant\",\"user\"]" out &&
    jq -e ".messages[0].content == \"help me write a poem\" and .messages[3].content == \"DONE\"" out &&
    jq -e ".done == true and .done_reason == \"terminated\" and .turn == 2" out &&
    jq -e ".messages[4].content | contains(\"[[TERMINATE CHAT]]\")" out &&
    jq -e ".id == \"s1\" and .metadata.k == 1 and .task == \"document\"" out &&
    jq -e ".usage.calls == 5 and .usage.prompt_tokens > 0 and .usage.completion_tokens > 0" out &&
    test "$(mock_count)" = 5 &&
    jq -se ".[0].body | .model == \"usr\" and (.messages | length == 1) and
            (.messages[0].content | contains(\"goal-1: write a short poem\") and contains(\"creative writing\")
             and contains(\"about to start a chat\"))" "$MOCK_LOG" &&
    jq -se ".[2].body.messages[0].content | contains(\"**User**: help me write a poem\n**Assistant**: \")" "$MOCK_LOG" &&
    jq -se ".[1].body | .model == \"asst\" and .messages == [{role: \"user\", content: \"help me write a poem\"}]" "$MOCK_LOG"
'
test_expect 'the built-in prompts keep their backslashes and the simulator is told the marker' '
    standard_script >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" in >out &&
    jq -se ".[2].body.messages[0].content | contains(\"strings with \\\\n,\") and contains(\"[[TERMINATE CHAT]]\")" "$MOCK_LOG"
'
test_expect 'a conversation that never terminates stops at --max-turns and says so' '
    endless_script >script && mock_start --script script && seeds 2 >in &&
    cl-rollout --full $ROLL --max-turns 3 --api-base "$MOCK_URL" in >out &&
    test "$(wc -l <out)" = 2 &&
    jq -se "all(.done_reason == \"max_turns\" and .turn == 3 and (.messages | length) == 6)" out &&
    jq -se "all(.usage.calls == 6)" out && test "$(mock_count)" = 12
'
test_expect 'a state ending with a user message continues with the assistant; finished states pass through byte for byte' '
    standard_script >script && mock_start --script script &&
    printf "%s\n" "{\"id\":\"a\",\"prompt\":\"g\",\"extra\":[1,2],\"messages\":[{\"role\":\"user\",\"content\":\"make it rhyme\"}]}" \
        "{\"id\":\"b\",  \"done\":true, \"messages\":[]}" >in &&
    cl-rollout --full $ROLL --api-base "$MOCK_URL" in >out &&
    jq -se ".[0] | .messages[1].content == \"DONE\" and .done_reason == \"terminated\" and .extra == [1,2] and .turn == 1" out &&
    sed -n 2p out >b && sed -n 2p in | cmp - b && test "$(mock_count)" = 2
'
test_expect 'the turn cap counts the replies already in the state: a state at the cap ends without a call' '
    mock_start && printf "%s\n" "{\"id\":\"a\",\"prompt\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\"}]}" >in &&
    cl-rollout --full $ROLL --max-turns 1 --api-base "$MOCK_URL" in >out &&
    jq -e ".done_reason == \"max_turns\" and .turn == 1 and .usage == {}" out && test "$(mock_count)" = 0
'
test_expect 'proact mode asks for JSON with a response field and keeps only the response' '
    { rule "about to start a chat" "$(user_says "hi")"
      rule "**Assistant**: Which season" "$(user_says "winter [[TERMINATE CHAT]]")"
      rule "helping a user with tasks such as writing" "Sure, here you go: \`\`\`json
{'"'"'thought'"'"': '"'"'need the season'"'"', '"'"'response'"'"': '"'"'Which season should it be about?'"'"',}
\`\`\`"; } >script &&
    mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --assistant-mode proact --api-base "$MOCK_URL" in >out &&
    jq -e ".messages[1].content == \"Which season should it be about?\" and .done_reason == \"terminated\"" out &&
    jq -se ".[1].body.messages | length == 1 and (.[0].content | contains(\"**User**: hi\") and contains(\"\\\"response\\\"\"))" "$MOCK_LOG"
'
test_expect 'system mode puts the CollabLLM system prompt first; the ratios mix modes deterministically per conversation' '
    standard_script >script && mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --assistant-mode system --api-base "$MOCK_URL" in >out &&
    jq -se ".[1].body.messages[0] | .role == \"system\" and (.content | contains(\"highly interactive assistant\"))" "$MOCK_LOG" &&
    jq -e ".messages[0].role == \"user\"" out &&
    mock_stop && rm -f mock.port && { rule "helping a user with tasks such as writing" "{\"response\": \"Which kind of poem?\"}"; standard_script; } >script2 &&
    mock_start --script script2 && seeds 40 >in40 &&
    cl-rollout --full $ROLL --max-turns 1 --proact-ratio 0.5 --api-base "$MOCK_URL" in40 >o1 &&
    n=$(jq -s "map(select(.body.model == \"asst\" and (.body.messages[0].content | contains(\"helping a user with tasks such as writing\")))) | length" "$MOCK_LOG") &&
    test "$n" -ge 10 && test "$n" -le 30 &&
    : >"$MOCK_LOG" && cl-rollout --full $ROLL --max-turns 1 --proact-ratio 0.5 --api-base "$MOCK_URL" in40 >o2 &&
    test "$(jq -s "map(select(.body.model == \"asst\" and (.body.messages[0].content | contains(\"helping a user with tasks such as writing\")))) | length" "$MOCK_LOG")" = "$n"
'
test_expect '--prompt-set cl sends our proact and system prompts; every record names its set' '
    { rule "works with people on writing" "{\"response\": \"Which kind of poem?\"}"; standard_script; } >script &&
    mock_start --script script && seeds 2 >in &&
    cl-rollout --full $ROLL --max-turns 1 --assistant-mode vanilla --api-base "$MOCK_URL" in >off &&
    jq -s -e "length == 2 and all(.prompt_set == \"official\")" off >/dev/null &&
    cl-rollout --full $ROLL --max-turns 1 --assistant-mode proact --prompt-set cl --api-base "$MOCK_URL" in >ours &&
    jq -s -e "all(.prompt_set == \"cl\") and all(.messages[1].content == \"Which kind of poem?\")" ours >/dev/null &&
    : >"$MOCK_LOG" && cl-rollout --full $ROLL --max-turns 1 --assistant-mode system --prompt-set cl --api-base "$MOCK_URL" in >sys &&
    jq -se "[.[] | select(.body.model == \"asst\") | .body.messages[0].content | contains(\"every token costs the user time\")] | length == 2 and all" "$MOCK_LOG"
'
test_expect 'userlm users get the goal as system prompt and flipped roles; their end token becomes the marker' '
    { rule "\"role\":\"assistant\",\"content\":\"make it rhyme\"" "lovely <|endconversation|> ignored"
      rule "\"role\":\"system\"" "make it rhyme"; } >script &&
    mock_start --script script && seeds 1 >in &&
    cl-rollout --full $ROLL --user-style userlm --api-base "$MOCK_URL" in >out &&
    jq -e ".messages | map(.content) | .[0] == \"make it rhyme\" and .[2] == \"lovely [[TERMINATE CHAT]]\"" out &&
    jq -e ".done_reason == \"terminated\" and .turn == 1" out &&
    jq -se ".[0].body.messages == [{role: \"system\", content: \"goal-1: write a short poem\n\"}]" "$MOCK_LOG" &&
    jq -se ".[2].body.messages | map(.role) == [\"system\", \"assistant\", \"user\"]" "$MOCK_LOG"
'
test_expect 'a --prompt-dir file replaces a prompt; an unknown placeholder stops the run with 78 before any call' '
    standard_script >script && mock_start --script script && seeds 1 >in && mkdir p &&
    printf "You are about to start a chat about {{goal}}. Answer JSON with a response." >p/user_opening.txt &&
    cl-rollout --full $ROLL --prompt-dir p --api-base "$MOCK_URL" in >out &&
    jq -se ".[0].body.messages[0].content == \"You are about to start a chat about goal-1: write a short poem. Answer JSON with a response.\"" "$MOCK_LOG" &&
    : >"$MOCK_LOG" && printf "{{goal}} {{gaol}}" >p/user_simulator.txt &&
    { cl-rollout --full $ROLL --prompt-dir p --api-base "$MOCK_URL" in >out 2>err; test $? = 78; } &&
    grep -q "{{gaol}}" err && test "$(mock_count)" = 0
'
test_expect 'a mode is required, and bad values are usage errors' '
    { cl-rollout -q </dev/null 2>err; test $? = 2; } && grep -q -- "--full or --branch" err &&
    { cl-rollout --full --proact-ratio 2 </dev/null 2>err; test $? = 2; } &&
    { cl-rollout --full --assistant-mode chatty </dev/null 2>err; test $? = 2; } && grep -q "vanilla, system, proact" err &&
    { cl-rollout --full --branch </dev/null 2>err; test $? = 2; } &&
    { cl-rollout --branch --candidate bogus </dev/null 2>err; test $? = 2; } && grep -q "openai:MODEL" err
'
test_done
