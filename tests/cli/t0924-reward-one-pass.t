#!/bin/sh
# cl-reward scores records asking only for bleu and bleu-word one at a time, each parsed,
# scored and printed on one thread (lib/collab/score.c, whole_one); the other metrics go
# through the batched phases.  Both must give the same records, failures, rejects, exit
# status and corpus counts, with any number of threads and any batch size.  One-pass batches
# are scored behind the reader, several at once: a stream that breaks off still gets every
# record read before the break, on both paths.
. "$(dirname "$0")/lib.sh"
G="$FIXTURES/bleu"
F="$FIXTURES/reward"
need_nltk

# Prose pairs, a branch record, a record whose document is missing (fails) and, last, one
# whose messages are not an array (rejected; the run then ends with 65).
make_input() {
    "$PY" "$G/corpus-bleu.py" prose >corpus &&
    jq -c "{id: (input_line_number | tostring), completion: .ref, messages: [], extracted: {document: .hyp}}" corpus >recs &&
    { head -n 40 recs; cat "$F/branch-document.jsonl"
      echo "{\"id\":\"nodoc\",\"completion\":\"abcdefgh\",\"messages\":[]}"
      tail -n +41 recs
      echo "{\"id\":\"m\",\"completion\":\"x\",\"messages\":\"no\",\"extracted\":{\"document\":\"x\"}}"; } >in
}
# A run: name, then flags; its exit status goes to NAME.rc.
run() {
    n=$1; shift
    cl-reward -Z "$@" --rejects "rej$n" --stats "$n.json" in >"out$n" 2>"err$n"
    echo $? >"$n.rc"
}
# The tokens metric's fields taken off, so that a bleu,tokens run reads as a bleu run.
without_tokens() {
    jq -c "walk(if type == \"object\" then del(.tokens) else . end)
           | walk(if type == \"object\" and .metric_info == {} then del(.metric_info) else . end)" "$1"
}

test_expect 'bleu alone: the same output with one thread or two, one batch or many' '
    make_input &&
    run a -j 2 --batch 5 --metric bleu,bleu-word &&
    run b -j 1 --metric bleu,bleu-word &&
    run c -j 2 --batch 1 --metric bleu,bleu-word &&
    test "$(cat a.rc)" = 65 && test "$(cat b.rc)" = 65 && test "$(cat c.rc)" = 65 &&
    cmp outa outb && cmp outa outc && cmp reja rejb && cmp reja rejc &&
    test "$(wc -l <outa)" = "$(($(wc -l <in) - 2))" &&
    jq -s -e --slurpfile ids in "map(.id) == (\$ids | map(.id) | map(select(. != \"nodoc\")))[:-1]" outa &&
    jq -S ".corpus_bleu, .scored" a.json >sa && jq -S ".corpus_bleu, .scored" b.json >sb && cmp sa sb &&
    grep -q "in:42: conversation: bleu: extracted.document is missing" erra
'
test_expect 'bleu alone gives what the batched path gives (bleu with tokens, tokens taken off)' '
    make_input &&
    run a -j 2 --batch 7 --metric bleu &&
    run t -j 2 --batch 7 --metric bleu,tokens --tokens words &&
    test "$(cat a.rc)" = "$(cat t.rc)" &&
    without_tokens outa >na && without_tokens outt >nt && cmp na nt && cmp reja rejt &&
    jq -S ".corpus_bleu, .scored" a.json >sa && jq -S ".corpus_bleu, .scored" t.json >st && cmp sa st &&
    test "$(jq ".corpus_bleu.bleu.units" a.json)" -gt 150 &&
    jq -s -e "map(select(.candidates | not) | .scores.bleu | type == \"number\") | all" outa
'
test_expect 'a stream that breaks off: every record read before the break is scored and written' '
    make_input &&
    head -n 25 recs | zstd -q -c >cut.zst &&
    sed -n 26,40p recs | zstd -q -c >second.zst &&
    head -c $(($(wc -c <second.zst) / 2)) second.zst >>cut.zst &&
    for m in bleu bleu,tokens; do
        cl-reward -Z -j 2 --batch 3 --metric $m --tokens words cut.zst >"cut.$m" 2>"cut.$m.err"
        test $? = 65 || return 1
        grep -q "cut.zst: truncated zstd input" "cut.$m.err" &&
        grep -q "25 records in, 25 out" "cut.$m.err" &&
        jq -s -e --slurpfile ids recs "map(.id) == (\$ids | map(.id))[:25]" "cut.$m" || return 1
    done
'
test_done
