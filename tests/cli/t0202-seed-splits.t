#!/bin/sh
# cl-seed splits, de-duplication, --split-ids, --limit and --shuffle.
. "$(dirname "$0")/lib.sh"

rows() { # N generic rows with distinct prompts
    i=1; while [ $i -le "$1" ]; do printf "{\"prompt\":\"question %d\",\"completion\":\"answer %d\"}\n" $i $i; i=$((i + 1)); done
}

test_expect 'the split is the same in every run and follows the test ratio' '
    rows 400 >in && cl-seed -q -Z --test-ratio 0.25 in >a && cl-seed -q -Z --test-ratio 0.25 in >b && cmp a b &&
    t=$(jq -r .split a | grep -c "^test$") && test "$t" -gt 70 && test "$t" -lt 130 &&
    test "$(jq -r .split a | sort -u | tr "\n" " ")" = "test train "
'
test_expect 'train and test are disjoint and together are the whole input' '
    rows 300 >in && cl-seed -q -Z --split train in >tr && cl-seed -q -Z --split test in >te &&
    cl-seed -q -Z --split all in >all && test "$(cat tr te | wc -l)" = 300 &&
    jq -r .id tr | sort >a && jq -r .id te | sort >b && test -z "$(comm -12 a b)" &&
    cat tr te | sort >both && sort all | cmp - both && test -s te
'
test_expect 'a row keeps its split whatever else is in the input, its order and the shard' '
    rows 200 >in && cl-seed -q -Z in | jq -r "[.id,.split]|@tsv" | sort >whole &&
    tac in | head -50 | cl-seed -q -Z | jq -r "[.id,.split]|@tsv" | sort >part &&
    test -z "$(comm -13 whole part)" && test "$(wc -l <part)" = 50 &&
    for i in 0 1 2; do cl-seed -q -Z --shard $i/3 in || exit 1; done | jq -r "[.id,.split]|@tsv" | sort | cmp - whole
'
test_expect '--seed changes the split, and the same --seed repeats it' '
    rows 200 >in && cl-seed -q -Z --seed 7 in >s7 && cl-seed -q -Z --seed 7 in >s7b && cl-seed -q -Z --seed 8 in >s8 &&
    cmp s7 s7b && ! cmp -s s7 s8
'
test_expect '--test-ratio 0 puts every row in train, 1 every row in test' '
    rows 50 >in && test "$(cl-seed -q -Z --test-ratio 0 in | jq -r .split | sort -u)" = train &&
    test "$(cl-seed -q -Z --test-ratio 1 in | jq -r .split | sort -u)" = test
'
test_expect 'the dataset own split wins over the hash, and eval/val/dev read as validation' '
    printf "%s\n" "{\"prompt\":\"a\",\"completion\":\"1\",\"split\":\"train\"}" "{\"prompt\":\"b\",\"completion\":\"2\",\"split\":\"eval\"}" \
        "{\"prompt\":\"c\",\"completion\":\"3\",\"split\":\"dev\"}" >in &&
    cl-seed -q -Z --test-ratio 1 in | jq -r .split | tr "\n" " " | grep -qx "train validation validation " &&
    test "$(cl-seed -q -Z --split validation in | wc -l)" = 2
'
test_expect 'duplicate prompts (case and spacing aside) are dropped and counted on stderr' '
    printf "%s\n" "{\"prompt\":\"What is  2+2?\",\"completion\":\"4\"}" "{\"prompt\":\"what is 2+2? \",\"completion\":\"four\"}" \
        "{\"prompt\":\"What is 3+3?\",\"completion\":\"6\"}" "{\"prompt\":\"\\nWHAT IS 2+2?\",\"completion\":\"4\"}" >in &&
    cl-seed -Z --stats st.json in >out 2>err && test "$(wc -l <out)" = 2 &&
    jq -r .completion out | tr "\n" " " | grep -qx "4 6 " && grep -q "2 duplicate prompts dropped" err &&
    jq -e ".duplicates == 2" st.json
'
test_expect 'de-duplication comes before the split, so a prompt never lands in both splits' '
    rows 100 >in && rows 100 | sed "s/answer/other answer/" >>in &&
    cl-seed -q -Z --split train in >tr && cl-seed -q -Z --split test in >te &&
    test "$(cat tr te | wc -l)" = 100 && jq -r .prompt tr te | sort | uniq -d >dups && ! test -s dups
'
test_expect '--keep-duplicates keeps repeated prompts' '
    printf "%s\n" "{\"prompt\":\"p\",\"completion\":\"1\"}" "{\"prompt\":\"P\",\"completion\":\"2\"}" >in &&
    test "$(cl-seed -q -Z --keep-duplicates in | wc -l)" = 2
'
test_expect '--split-ids reuses a published split, in ID SPLIT lines or as JSON (cl-seed output)' '
    rows 20 >in && cl-seed -q -Z in >base &&
    jq -r "[.id, (if .split == \"train\" then \"test\" else \"train\" end)]|@tsv" base | head -15 >ids.tsv &&
    cl-seed -Z --split-ids ids.tsv in >out 2>err && test "$(wc -l <out)" = 15 &&
    jq -r "[.id,.split]|@tsv" out | cmp - ids.tsv && grep -q "5 rows left out: their ids are not in ids.tsv" err &&
    jq -c "{id, split: \"validation\"}" base | zstd -q >ids.zst && cl-seed -q -Z --split-ids ids.zst --split validation in >v &&
    test "$(wc -l <v)" = 20
'
test_expect '--limit stops after N seeds of the chosen split' '
    rows 100 >in && cl-seed -q -Z --split test --limit 3 in >out && test "$(wc -l <out)" = 3 &&
    test "$(jq -r .split out | sort -u)" = test && cl-seed -q -Z --split test in | head -3 | cmp - out &&
    test "$(cl-seed -q -Z --limit 0 in | wc -l)" = 0
'
test_expect '--shuffle is a permutation fixed by --seed' '
    rows 60 >in && cl-seed -q -Z --seed 3 in >plain && cl-seed -q -Z --shuffle --seed 3 in >s3 &&
    cl-seed -q -Z --shuffle --seed 3 in >s3b && cl-seed -q -Z --shuffle --seed 4 in >s4 &&
    cmp s3 s3b && ! cmp -s s3 s4 && ! cmp -s s3 plain && sort s3 | cmp - "$(sort plain >sp; echo sp)" &&
    test "$(cl-seed -q -Z --shuffle --seed 3 --limit 5 in)" = "$(head -5 s3)"
'
test_expect 'per-split counts go to --stats' '
    rows 40 >in && cl-seed -q -Z --stats st.json in >out &&
    jq -e ".train + .test == 40 and .records_out == 40 and .duplicates == 0" st.json
'
test_done
