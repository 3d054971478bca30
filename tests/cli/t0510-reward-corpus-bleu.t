#!/bin/sh
# cl-reward's corpus BLEU (--stats corpus_bleu, the closing summary) against NLTK corpus_bleu
# on characters (the official document metric's corpus form) and sacreBLEU's corpus BLEU on
# 13a words, run live, to 1e-9.
. "$(dirname "$0")/lib.sh"
G="$FIXTURES/bleu"
need_nltk

# A corpus of hyp/ref pairs as records cl-reward scores.
to_records() {
    jq -c '{id: (input_line_number | tostring), completion: .ref, messages: [], extracted: {document: .hyp}}' "$1"
}
# Succeeds when |a - b| <= 1e-9 (and prints both).
within_1e9() {
    awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; print a, b; exit !(a != "" && b != "" && d <= 1e-9) }'
}

test_expect 'corpus bleu equals NLTK corpus_bleu on the golden corpus, short and empty pairs included' '
    "$PY" "$G/gen-golden.py" corpus >corpus &&
    to_records corpus >recs &&
    cl-reward -q -Z --metric bleu --stats st.json recs >/dev/null &&
    test "$(jq .corpus_bleu.bleu.units st.json)" = "$(wc -l <corpus)" &&
    ours=$(jq .corpus_bleu.bleu.score st.json) && theirs=$("$PY" "$G/corpus-bleu.py" nltk-char <corpus) &&
    within_1e9 "$ours" "$theirs" && awk -v a="$ours" "BEGIN { exit !(a > 0.1) }" &&
    head -n 12 corpus >short &&
    to_records short >srecs &&
    cl-reward -q -Z --metric bleu --stats s.json srecs >/dev/null &&
    ours=$(jq .corpus_bleu.bleu.score s.json) && theirs=$("$PY" "$G/corpus-bleu.py" nltk-char <short) &&
    within_1e9 "$ours" "$theirs"
'
test_expect 'corpus bleu is not the mean of the per-record scores' '
    "$PY" "$G/gen-golden.py" corpus >corpus &&
    to_records corpus >recs &&
    cl-reward -q -Z --metric bleu --stats st.json recs | jq -s "map(.scores.bleu) | add / length" >mean &&
    awk -v a="$(cat mean)" -v b="$(jq .corpus_bleu.bleu.score st.json)" "BEGIN { d = a - b; if (d < 0) d = -d; print a, b; exit !(d > 0.01) }"
'
test_expect 'corpus bleu_word equals NLTK corpus_bleu with method3 (sacreBLEU exp smoothing) on 13a tokens' '
    "$PY" "$G/corpus-bleu.py" prose >all &&
    "$PY" "$G/corpus-bleu.py" long4 <all >corpus &&
    test "$(wc -l <corpus)" -gt 100 &&
    to_records corpus >recs &&
    cl-reward -q -Z --metric bleu-word --stats st.json recs >/dev/null &&
    ours=$(jq .corpus_bleu.bleu_word.score st.json) && theirs=$("$PY" "$G/corpus-bleu.py" nltk-word <corpus) &&
    within_1e9 "$ours" "$theirs" && awk -v a="$ours" "BEGIN { exit !(a > 0.1 && a < 0.95) }"
'
if "$PY" -c "import sacrebleu" 2>/dev/null; then
    test_expect 'corpus bleu_word equals sacreBLEU corpus_bleu, short and empty hypotheses included' '
        "$PY" "$G/corpus-bleu.py" prose >corpus &&
        to_records corpus >recs &&
        cl-reward -q -Z --metric bleu-word --stats st.json recs >/dev/null &&
        ours=$(jq .corpus_bleu.bleu_word.score st.json) && theirs=$("$PY" "$G/corpus-bleu.py" sacrebleu <corpus) &&
        within_1e9 "$ours" "$theirs"
    '
else
    test_skip 'corpus bleu_word equals sacreBLEU corpus_bleu, short and empty hypotheses included' \
        'python sacrebleu is not importable (no Debian or npm package; the NLTK method3 test above checks the same sum)'
fi
test_expect 'the corpus score is the same with one worker or two and goes to the closing summary' '
    "$PY" "$G/corpus-bleu.py" prose >corpus &&
    to_records corpus >recs &&
    cl-reward -Z -j 1 --batch 7 --metric bleu,bleu-word --stats a.json recs >/dev/null 2>err1 &&
    cl-reward -Z -j 2 --metric bleu,bleu-word --stats b.json recs >/dev/null 2>err2 &&
    jq -S .corpus_bleu a.json >a && jq -S .corpus_bleu b.json >b && cmp a b &&
    grep -E "corpus bleu 0\.[0-9]{4}, bleu_word 0\.[0-9]{4} \(154 units\)" err1 &&
    test "$(jq ".corpus_bleu.bleu.matches | length" a.json)" = 4
'
test_expect 'records that fail are left out of the corpus score' '
    printf "%s\n" "{\"id\":\"1\",\"completion\":\"abcdefgh\",\"messages\":[],\"extracted\":{\"document\":\"abcdefgh\"}}" \
        "{\"id\":\"2\",\"completion\":\"abcdefgh\",\"messages\":[]}" \
        "{\"id\":\"3\",\"completion\":\"abcdefgh\",\"messages\":[],\"extracted\":{\"document\":\"abcdxxgh\"}}" >recs &&
    { cl-reward -q -Z --metric bleu --stats st.json recs >out 2>err; test $? = 1; } &&
    test "$(jq .corpus_bleu.bleu.units st.json)" = 2 &&
    test "$(jq -c .corpus_bleu.bleu.ngrams st.json)" = "[16,14,12,10]" &&
    test "$(jq -c .corpus_bleu.bleu.matches st.json)" = "[14,11,8,6]"
'
test_expect 'a run stopped by a malformed record (65) counts only the records written before it, in either path' '
    printf "%s\n" "{\"id\":\"1\",\"completion\":\"abcdefgh\",\"messages\":[],\"extracted\":{\"document\":\"abcdefgh\"}}" \
        "{\"id\":\"2\",\"completion\":\"abcdefgh\",\"messages\":5}" \
        "{\"id\":\"3\",\"completion\":\"abcdefgh\",\"messages\":[],\"extracted\":{\"document\":\"abcdxxgh\"}}" >recs &&
    for m in bleu bleu,tokens; do
        { cl-reward -q --metric $m --tokens words --stats st.json -o out recs 2>err; test $? = 65; } &&
        grep -q "recs:2: messages" err && test "$(zstd -dc out | wc -l)" = 1 &&
        test "$(jq -c "[.records_out, .scored, .corpus_bleu.bleu.units]" st.json)" = "[1,1,1]" || exit 1
    done
'
test_expect 'shards merge by adding counts: two halves give the whole corpus score' '
    "$PY" "$G/gen-golden.py" corpus >corpus &&
    to_records corpus >recs &&
    cl-reward -q -Z --metric bleu --stats all.json recs >/dev/null &&
    cl-reward -q -Z --metric bleu --shard 0/2 --stats h0.json recs >/dev/null &&
    cl-reward -q -Z --metric bleu --shard 1/2 --stats h1.json recs >/dev/null &&
    jq -s "map(.corpus_bleu.bleu) | {m: (.[0].matches as \$a | .[1].matches as \$b | [range(4)] | map(\$a[.] + \$b[.])), u: (.[0].units + .[1].units)}" h0.json h1.json >sum &&
    test "$(jq -c .m sum)" = "$(jq -c .corpus_bleu.bleu.matches all.json)" &&
    test "$(jq .u sum)" = "$(jq .corpus_bleu.bleu.units all.json)"
'
test_done
