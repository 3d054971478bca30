#!/bin/sh
# The offline world: cl-seed --preset world, the world: user, judges and scripted assistants
# through the real tools, and MR ranking asking above guessing only where asking pays.
. "$(dirname "$0")/lib.sh"

test_expect 'cl-seed --preset world is deterministic by --seed, with three tasks and disjoint splits' '
    cl-seed -q -Z --preset world --limit 400 >a && cl-seed -q -Z --preset world --limit 400 >b && cmp a b &&
    cl-seed -q -Z --preset world --limit 400 --seed 3 >c && ! cmp -s a c && test "$(wc -l <a)" = 400 &&
    test "$(jq -r .task a | sort -u | tr "\n" " ")" = "code document math " &&
    test "$(jq -r .id a | sort -u | wc -l)" = 400 &&
    test "$(jq -r .prompt a | sort -u | wc -l)" = 400 &&
    cat a c | jq -r "[.prompt, .split] | @tsv" | sort -u | cut -f1 | uniq -d >twice && ! test -s twice &&
    test "$(jq -r .split a | sort -u | tr "\n" " ")" = "test train validation "
'
test_expect '--split test keeps test seeds only; the world runs out of distinct tasks loudly' '
    cl-seed -q -Z --preset world --split test --limit 50 >t && test "$(jq -r .split t | sort -u)" = test &&
    test "$(wc -l <t)" = 50 &&
    cl-seed -Z --preset world --split test --limit 100000 >all 2>err && grep -q "no further distinct task" err &&
    n=$(wc -l <all) && test "$n" -gt 150 && test "$n" -lt 400 &&
    cl-seed -q -Z --preset world --split train --keep-duplicates --limit 5000 >dup && test "$(wc -l <dup)" = 5000
'
test_expect '--preset world reads no input and refuses --task' '
    echo "{}" >in; cl-seed -q --preset world in 2>err; test $? = 2 && grep -q "reads no FILE" err &&
    cl-seed -q --preset world --task x 2>err; test $? = 2
'
test_expect 'world: user and careful assistant hold the whole conversation, prompted or userlm' '
    printf "%s\n" "{\"id\":\"d\",\"prompt\":\"Write a note inviting Sam to the lunch on Wednesday.\"}" >s &&
    cl-rollout -q -Z --full --no-cache --assistant world:careful --user world: s >p &&
    jq -r ".messages[].content" p >got &&
    printf "%s\n" "Write a note inviting a friend to the lunch on Wednesday." "What is the name?" \
        "The name is Sam." "Dear Sam, join me for the lunch on Wednesday." \
        "Thank you, that is right. [[TERMINATE CHAT]]" >want && diff want got &&
    cl-rollout -q -Z --full --no-cache --assistant world:careful --user world: --user-style userlm s >u &&
    jq -r ".messages[].content" u | diff want -
'
test_expect 'a world program that does not exist is a configuration error (78)' '
    echo "{\"id\":\"d\",\"prompt\":\"x\"}" >s;
    cl-rollout -q --full --no-cache --assistant world:oracle --user world: s >/dev/null 2>err; test $? = 78 &&
    grep -q "no such world program" err
'
test_expect 'a seed that is not a world task fails its record with the reason' '
    echo "{\"id\":\"d\",\"prompt\":\"Write a poem.\"}" >s;
    cl-rollout -q -Z --full --no-cache --retries 0 --assistant world:careful --user world: s >out 2>err; test $? = 1 &&
    jq -r .error out | grep -q "not a task of the offline world"
'

# mr TASK JUDGES METRIC: candidate 0 asks once whatever it knows (world:ask), candidate 1
# never asks (world:guess); futures by the guesser, which uses what it was told.
mr() {
    cl-seed -q -Z --preset world --limit 300 | jq -c "select(.task == \"$1\")" >seeds &&
    cl-rollout -q --branch --no-cache --candidate assistant --candidate future-assistant \
        --assistant world:ask --future-assistant world:guess --user world: --samples 2 seeds >b &&
    cl-judge -q --no-cache --judge world: $2 b >j && cl-reward -q -Z --reward v2 --tokens words $3 j >r &&
    # miss: a detail is missing; wrong: the usual value of a missing detail is not the goal'"'"'s
    jq -c ".metadata.world as \$w | [\$w.slots | keys[] | select(. as \$k | \$w.given | index(\$k) | not)] as \$m |
           {miss: (\$m | length > 0), wrong: any(\$m[]; \$w.slots[.] != \$w.usual[.]),
            ask: .candidates[0].mr.mean, guess: .candidates[1].mr.mean}" r >mr && test "$(wc -l <mr)" -gt 20 &&
    # where a guess would be wrong asking ranks above guessing, where nothing is missing answering
    # ranks above asking (a lucky guess may beat a question when the reward has no interactivity)
    test "$(jq -s "map(select(.wrong and .ask <= .guess)) | length" mr)" = 0 &&
    test "$(jq -s "map(select((.miss | not) and .ask >= .guess)) | length" mr)" = 0 &&
    test "$(jq -s "map(select(.wrong)) | length" mr)" -gt 10 &&
    test "$(jq -s "map(select(.miss | not)) | length" mr)" -gt 2 &&
    cl-pairs -q -Z --dpo r >pairs && test -s pairs &&
    jq -r ".chosen[0].content" pairs | grep -q "?$"
}
test_expect 'MR ranks a clarifying question above a guess only when details are missing: math' '
    mr math "--accuracy --interactivity" ""
'
test_expect 'MR ranks a clarifying question above a guess only when details are missing: document' '
    mr document "--extract document --interactivity" "--metric bleu"
'
test_expect 'MR ranks a clarifying question above a guess only when details are missing: code' '
    test -x /usr/bin/python3 || { echo "SKIP: no /usr/bin/python3 for the sandbox"; exit 0; }
    mr code "--extract code --interactivity" "--metric pass_rate"
'
test_expect 'the eval pipeline ranks the careful assistant above the passive one on held-out seeds' '
    cl-seed -q -Z --preset world --split test --limit 120 | jq -c "select(.task == \"math\")" >t &&
    make -s -f "$ROOT/pipelines/eval.mk" BIN="$CL_BIN" SEEDS=t OUT=ev TASK=math BOOTSTRAP=200 \
        MODELS="passive=world:passive careful=world:careful" USER_MODEL=world: JUDGE=world: all 2>log &&
    jq -e ".runs | length == 2" ev/report.json >/dev/null &&
    zstdcat ev/careful/scored.jsonl.zst | jq -s "map(.scores.accuracy) | add / length" >c &&
    zstdcat ev/passive/scored.jsonl.zst | jq -s "map(.scores.accuracy) | add / length" >p &&
    test "$(cat c)" = 1 && awk "{ exit !(\$1 < 0.7) }" p
'
test_done
