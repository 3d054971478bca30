#!/bin/sh
# local:DIR with response_format: constrained decoding makes even a tiny model's replies JSON
# (json_object and json_schema), batch-invariant, with the log-probs of the masked
# distribution; bad schemas are per-record errors; cl-rollout sends the reply schema to
# HTTP servers when asked (--response-format schema) and not by default.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
. "$(dirname "$0")/mock.sh"
S="$_top/shared"
ft_base "$S" 4096 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the model"; exit 1; }
M="$S/base/final"
call() { "$CL_TESTBIN/llmcall" -q -Z --no-cache --assistant "local:$M" "$@"; }
questions() { jq -c '{id: .messages[0].content, messages: [.messages[0]]}' "$S/sft.jsonl"; }
OBJ='response_format={"type":"json_object"}'
SCHEMA='response_format={"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object",
  "properties":{"thought":{"type":"string"},"n":{"type":"integer"},"ok":{"type":"boolean"},
  "mood":{"enum":["red","blue"]},"response":{"type":"string"}},"required":["response","mood"],
  "additionalProperties":false}}}'

test_expect 'greedy json_object replies of a model that never saw JSON parse as objects' '
    questions >in && call --assistant-temperature 0 --assistant-max-tokens 24 --assistant-param "$OBJ" in >out &&
    test "$(jq -s length out)" = 8 &&
    jq -e "select((.reply | fromjson | type) != \"object\")" out; test $? = 4 &&
    call --assistant-temperature 0 --assistant-max-tokens 24 in >plain &&
    jq -e "select(.reply | try (fromjson | type == \"object\") catch false)" plain; test $? = 4
'
test_expect 'sampled json_schema replies hold the schema: required keys, declared keys only, types, enum' '
    jq -cn "range(40) | {id: \"r\(.)\", messages: [{role: \"user\", content: \"What is color \(. % 8)?\"}]}" >in &&
    call --assistant-temperature 1.5 --assistant-max-tokens 40 --assistant-param "$SCHEMA" in >out &&
    jq -e "select(.reply | fromjson | (has(\"response\") and (.mood == \"red\" or .mood == \"blue\") and
           (keys - [\"thought\",\"n\",\"ok\",\"mood\",\"response\"] == []) and (.response | type) == \"string\" and
           ((.n // 0) | . == floor) and ((.ok // false) | type) == \"boolean\") | not)" out; test $? = 4
'
test_expect 'constrained replies depend on the sample key only: alone, among 40, in any order (greedy, top-p)' '
    jq -cn "range(40) | {id: \"r\(.)\", messages: [{role: \"user\", content: \"What is color \(. % 8)?\"}]}" >in &&
    tac in >rev && head -1 in >one &&
    for tp in "1.5 1" "1.5 0.9" "0 1"; do
        set -- $tp &&
        call --assistant-temperature $1 --assistant-top-p $2 --assistant-max-tokens 30 --assistant-param "$SCHEMA" \
            --max-inflight 40 in >all &&
        call --assistant-temperature $1 --assistant-top-p $2 --assistant-max-tokens 30 --assistant-param "$SCHEMA" \
            --max-inflight 7 rev >some &&
        call --assistant-temperature $1 --assistant-top-p $2 --assistant-max-tokens 30 --assistant-param "$SCHEMA" one >alone &&
        jq -c "[.id, .reply]" all | sort >a && jq -c "[.id, .reply]" some | sort >b && cmp a b &&
        head -1 all | jq -c "[.id, .reply]" >x && jq -c "[.id, .reply]" alone | cmp - x &&
        jq -e "select(.reply | fromjson | has(\"response\") | not)" all >/dev/null; test $? = 4 &&
        test "$(jq -r .reply all | sort -u | wc -l)" -gt "$([ $1 = 0 ] && echo 0 || echo 10)" || return 1
    done &&
    test "$(jq -r .reply all | sort -u | wc -l)" -le 8
'
test_expect 'log-probs are those of the masked distribution: tokens the budget forces have log-prob 0' '
    jq -cn "range(1; 5) | {id: \"s\(.)\", task: \"document\", task_desc: \"colours\", prompt: \"goal: What is color \(.)?\"}" >in &&
    cl-rollout --branch -q -Z --assistant "local:$M" --user "local:$M" --user-style userlm --assistant-max-tokens 24 \
        --assistant-param "$OBJ" --user-max-tokens 12 -k 2 --samples 0 --window 0 --assistant-mode vanilla \
        --logprobs --no-cache in >out &&
    test "$(jq -s "[.[].candidates[]] | length" out)" = 8 &&
    jq -e "select(.candidates[] | (.content | fromjson | type) != \"object\" or any(.logps[]; . > 0) or
           ((.logps | length) == 24 and ([.logps[] | select(. == 0)] | length) == 0))" out; test $? = 4 &&
    test "$(jq -s "[.[].candidates[] | select((.logps | length) == 24)] | length" out)" -ge 1
'
test_expect 'the response_format is part of the cache key' '
    questions | head -2 >in && cc() { "$CL_TESTBIN/llmcall" -q -Z --cache c --assistant "local:$M" \
        --assistant-temperature 0 --assistant-max-tokens 12 "$@" in; } &&
    cc --stats s1 >a && cc --assistant-param "$OBJ" --stats s2 >b && cc --assistant-param "$OBJ" --stats s3 >b2 &&
    jq -e ".llm.cache_hits == 0" s2 && jq -e ".llm.cache_hits == 2" s3 && cmp b b2 && ! cmp -s a b
'
test_expect 'an unsupported schema keyword or format is a per-record error naming it' '
    questions | head -2 >in &&
    { call --assistant-param "response_format={\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",
        \"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1}}}}}" in >out 2>err;
      test $? = 1; } &&
    test "$(jq -s "map(select(.error.message | test(\"properties.a: unsupported JSON Schema keyword .minimum.\"))) | length" out)" = 2 &&
    { call --assistant-param "response_format={\"type\":\"yaml\"}" in >out2 2>err; test $? = 1; } &&
    jq -e ".error.message | test(\"yaml\")" out2 >/dev/null &&
    call --assistant-temperature 0 --assistant-param "response_format={\"type\":\"text\"}" in >txt &&
    jq -r .reply txt | head -1 | grep -q "^Color 0 is"
'
test_expect 'cl-rollout sends the reply schema to HTTP roles with --response-format schema, not by default' '
    jq -cn "{match: \"about to start a chat\", reply: ({thought: \"t\", response: \"What is color 2?\"} | tojson)},
            {match: \"role-playing\", reply: ({thought: \"t\", response: \"thanks [[TERMINATE CHAT]]\"} | tojson)},
            {match: \"Answer with one JSON object with three fields\", reply: ({current_problem: \"c\", thought: \"t\", response: \"r\"} | tojson)}" >script &&
    mock_start --script script &&
    jq -cn "{id: \"s1\", task: \"document\", task_desc: \"colours\", prompt: \"goal: What is color 2?\"}" >in &&
    cl-rollout --full -q -Z --no-cache --assistant openai:a --user openai:u --api-base "$MOCK_URL" --max-turns 2 \
        --assistant-mode proact in >o1 &&
    jq -se "map(select(.body.response_format)) | length == 0" "$MOCK_LOG" && : >"$MOCK_LOG" &&
    cl-rollout --full -q -Z --no-cache --assistant openai:a --user openai:u --api-base "$MOCK_URL" --max-turns 2 \
        --assistant-mode proact --response-format schema in >o2 && jq -c "[.messages[].content]" o1 >m1 && jq -c "[.messages[].content]" o2 | cmp - m1 &&
    jq -se "map(select(.body.response_format.type == \"json_schema\")) | length == (. | length) and length >= 3" "$MOCK_LOG" &&
    jq -se "map(.body.response_format.json_schema.schema.properties | keys) | unique ==
            [[\"current_problem\",\"response\",\"thought\"],[\"response\",\"thought\"]]" "$MOCK_LOG" &&
    { cl-rollout --full --response-format maybe in 2>err; test $? = 2; } && grep -q "auto, schema, none" err
'
test_done
