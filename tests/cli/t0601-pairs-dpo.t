#!/bin/sh
# cl-pairs --dpo: pair selection, the gap filter, tie-breaks and the system prompt, on the
# hand-built branch records of tests/fixtures/pairs/branches.jsonl (see the comments there:
# conv-a/t0 has a clear best and worst, conv-a/t1 two equal means with different std, conv-b a
# gap of 0.01, conv-c a gap of 0.30 - 0.28, conv-d is a finished state).
. "$(dirname "$0")/lib.sh"
B="$FIXTURES/pairs/branches.jsonl"
# The records of FILE that match a jq condition (jq 1.6 -e judges the last input, not the last
# output, so select() and -e go in separate calls).
pick() { jq -c "select($1)" "$2"; }

test_expect 'the highest MR is chosen and the lowest rejected, in TRL conversational form' '
    cl-pairs -q -Z --dpo "$B" >out &&
    jq -c "select(.id == \"conv-a/t0\") | [.conv_id, .turn, .prompt[0].role, .chosen, .rejected,
           .score_chosen, .score_rejected, .chosen_candidate, .rejected_candidate]" out >got &&
    echo "[\"conv-a\",0,\"user\",[{\"role\":\"assistant\",\"content\":\"Which sum? Tell me the numbers.\"}],[{\"role\":\"assistant\",\"content\":\"Five.\"}],0.7,0.1,\"c1\",\"c2\"]" >want &&
    cmp got want
'
test_expect 'turns with a gap below --min-gap (default 0.02) give no pair, and --stats counts them' '
    cl-pairs -q -Z --dpo --stats st "$B" >out &&
    test "$(jq -r .id out | tr "\n" " ")" = "conv-a/t0 conv-c/t0 " &&
    test "$(jq -c "[.turns, .pairs, .below_min_gap, .finished_states]" st)" = "[4,2,2,1]"
'
test_expect 'a gap equal to --min-gap in decimal is kept although 0.30 - 0.28 < 0.02 in binary' '
    cl-pairs -q -Z --dpo "$B" >out && pick ".id == \"conv-c/t0\"" out | jq -e ".score_chosen - .score_rejected < 0.02"
'
test_expect 'a larger --min-gap drops more, --min-gap 0 keeps every turn' '
    test "$(cl-pairs -q -Z --dpo --min-gap 0.5 "$B" | jq -r .id)" = "conv-a/t0" &&
    test "$(cl-pairs -q -Z --dpo --min-gap 0 "$B" | wc -l)" = 4
'
test_expect 'equal means are broken by the smaller MR std' '
    cl-pairs -q -Z --dpo --min-gap 0 "$B" >out &&
        pick ".id == \"conv-a/t1\"" out | jq -e ".chosen_candidate == \"c1\" and .rejected_candidate == \"c0\" and .chosen[0].content == \"5.\""
'
test_expect 'candidates of one turn split over several records are ranked together' '
    jq -c "select(.id == \"conv-a\" and .turn == 0) | .candidates |= .[0:2]" "$B" >part1 &&
    jq -c "select(.id == \"conv-a\" and .turn == 0) | .candidates |= .[2:]" "$B" >part2 &&
    cat part1 part2 | cl-pairs -q -Z --dpo >out && test "$(wc -l <out)" = 1 &&
    jq -e ".chosen_candidate == \"c1\" and .rejected_candidate == \"c2\"" out
'
test_expect '--system-prompt puts the CollabLLM system prompt first, names its set and changes nothing else' '
    cl-pairs -q -Z --dpo "$B" >plain && cl-pairs -q -Z --dpo --system-prompt "$B" >sys &&
    jq -s -e "length == 2 and all(.prompt[0].role == \"system\" and (.prompt[0].content | test(\"highly interactive assistant\")) and .prompt_set == \"official\")" sys >/dev/null &&
    jq -c "del(.prompt[0], .prompt_set)" sys | cmp - plain &&
    jq -e "has(\"prompt_set\") | not" plain
'
test_expect '--prompt-set cl uses our system prompt and records it, in pairs and dialogues' '
    cl-pairs -q -Z --dpo --system-prompt --prompt-set cl "$B" >sys &&
    jq -s -e "length == 2 and all(.prompt[0].content | test(\"every token costs the user time\")) and all(.prompt_set == \"cl\")" sys >/dev/null &&
    { cl-pairs -Z --dpo --prompt-set ours "$B" 2>err; test $? = 2; } && grep -q "not official or cl" err
'
test_expect '--prompt-dir replaces the system prompt text, which is used exactly as the file has it' '
    mkdir p && printf "Ask first.\n" >p/collabllm_system.txt &&
    cl-pairs -q -Z --dpo --system-prompt --prompt-dir p "$B" | jq -s -e "length == 2 and all(.prompt[0].content == \"Ask first.\\n\")" >/dev/null
'
test_expect 'a candidate without an MR is reported with file, line and field on stderr, never in the DPO file, and the rest is paired' '
    { head -1 "$B" | jq -c "del(.candidates[1].mr)"; sed -n 4p "$B"; } >in &&
    { cl-pairs -Z --dpo in >out 2>err; test $? = 1; } &&
    grep -q "in:1: candidates\[1\].mr: missing" err &&
    test "$(jq -r .id out)" = "conv-c/t0" && ! grep -q "\"error\"" out &&
    grep -q "2 records in, 1 out, 1 failed (reported above, not written)" err &&
    { cl-pairs -Z --dpo --rejects rej in >out2 2>err; test $? = 1; } && cmp out out2 &&
    jq -e ".id == \"conv-a\" and .error.tool == \"cl-pairs\"" rej >/dev/null &&
    grep -q "1 failed (in the rejects file)" err
'
test_expect 'a record that is not a branch is reported, not dropped, even with -q' '
    printf "{\"id\":\"x\",\"messages\":[]}\n" >in &&
    { cl-pairs -q -Z --dpo in >out 2>err; test $? = 1; } && grep -q "in:1: .*candidates" err && ! test -s out
'
test_expect 'a turn with one candidate or none gives no pair and is counted, the run goes on' '
    printf "{\"id\":\"x\",\"messages\":[],\"candidates\":[]}\n" >in &&
    head -1 "$B" | jq -c ".id = \"y\" | .candidates |= .[0:1]" >>in && sed -n 4p "$B" >>in &&
    cl-pairs -q -Z --dpo --stats st in >out && test "$(jq -r .id out)" = "conv-c/t0" &&
    jq -e ".single_candidate == 2 and .pairs == 1" st >/dev/null
'
test_expect 'a turn that is not a count of replies is reported by name' '
    printf "{\"id\":\"a\",\"turn\":-1,\"messages\":[],\"candidates\":[]}\n{\"id\":\"b\",\"turn\":1.5,\"messages\":[],\"candidates\":[]}\n" >in &&
    { cl-pairs -Z --dpo in >out 2>err; test $? = 1; } &&
    grep -q "in:1: turn: not a count of replies" err && grep -q "in:2: turn" err
'
test_expect 'two modes at once, or a mode option without its mode, are usage errors' '
    { cl-pairs --dpo --sft </dev/null 2>err; test $? = 2; } && grep -q "cannot be combined" err &&
    { cl-pairs --min-gap 0.1 </dev/null 2>err; test $? = 2; } && grep -q "needs --dpo" err &&
    { cl-pairs --dpo --min-gap x </dev/null 2>err; test $? = 2; }
'
test_expect 'pairs are the same bytes on every run and through zstd' '
    cl-pairs -q -Z --dpo "$B" >a && zstd -q -c "$B" | cl-pairs -q --dpo | zstd -dc >b && cmp a b
'
test_done
