#!/bin/sh
# cl-judge --report: the benchmark table, its numbers checked against an independent oracle.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/judge"
B="$F/report-base.jsonl"
O="$F/report-online.jsonl"

test_expect 'every mean, interval, relative improvement and paired difference matches an independent Python oracle' '
    cl-judge --report -q --seed 7 --bootstrap 500 --baseline base --label base --label online \
        --format json "$B" "$O" >rep.json &&
    python3 "$F/report_oracle.py" 7 500 base base="$B" online="$O" <rep.json
'

test_expect 'means agree with the hand-computed values (x100 for metrics, thousands for tokens)' '
    cl-judge --report -q --baseline base --label base --label online --format json "$B" "$O" >rep.json &&
    jq -e ".tasks[0].task == \"math\" and .tasks[0].metric == \"accuracy\"" rep.json &&
    jq -e ".tasks[0].runs[0].measures.metric.mean - 100*2/6 | fabs < 1e-9" rep.json &&
    jq -e ".tasks[0].runs[0].measures.tokens.mean - 3.2 | fabs < 1e-9" rep.json &&
    jq -e ".tasks[0].runs[0].measures.itr | .n == 5 and .mean == 40" rep.json &&
    jq -e ".tasks[0].runs[1].measures.itr.mean - 500/6 | fabs < 1e-9" rep.json &&
    jq -e ".tasks[0].comparisons[0].measures.tokens.rel_improvement - 100*(3.2-14.6/6)/3.2 | fabs < 1e-9" rep.json &&
    jq -e ".tasks[0].comparisons[0].measures.itr.paired | .n == 4 and .mean == 50" rep.json &&
    jq -e ".tasks[1].task == \"document\" and .tasks[1].metric == \"bleu\"" rep.json &&
    jq -e ".tasks[1].runs[0].measures.metric.mean - 32.5 | fabs < 1e-9" rep.json
'

test_expect 'a record with an error is counted as failed and never used as a score' '
    cl-judge --report -q --baseline base --label base --label online --format json "$B" "$O" >rep.json &&
    jq -e ".tasks[1].runs[1] | .records == 1 and .failed == 1 and .measures.metric.n == 1" rep.json &&
    cl-judge --report -q --label base --label online "$B" "$O" >table &&
    grep -q "1 (1 failed)" table
'

test_expect 'the same seed gives the same bytes and another seed other intervals' '
    cl-judge --report -q --seed 3 --format json "$B" >a && cl-judge --report -q --seed 3 --format json "$B" >b &&
    cmp a b && cl-judge --report -q --seed 4 --format json "$B" >c && ! cmp -s a c &&
    jq -e ".tasks[0].runs[0].measures.metric.mean" a >m1 && jq -e ".tasks[0].runs[0].measures.metric.mean" c >m2 &&
    cmp m1 m2
'

test_expect 'the terminal table has a row per run, relative improvements and paired differences' '
    cl-judge --report -q --baseline base --label base --label online "$B" "$O" >t &&
    grep -q "^95% bootstrap intervals (2000 resamples, seed 0)" t &&
    grep -Eq "^base +6 +33\.3 \[" t && grep -Eq "^online +6 +66\.7 \[" t &&
    grep -Eq "^Rel\. improv\. online vs base .*\+100\.0% +\+24\.0% +\+108\.3%" t &&
    grep -Eq "^Paired diff online - base +5 +40\.0 \[" t
'

test_expect 'Markdown output is a pipe table with right-aligned numeric columns' '
    cl-judge --report -q --baseline base --label base --label online --format markdown "$B" "$O" >md &&
    test "$(wc -l <md)" = 6 && head -1 md | grep -q "^| Run .*| math ACC .*| document BLEU .*|$" &&
    sed -n 2p md | grep -Eq "^\|-+\|(-+:\|)+$" && grep -q "^| online " md
'

test_expect 'TSV output has one row per task, run and measure with the baseline comparison' '
    cl-judge --report -q --baseline base --label base --label online --format tsv "$B" "$O" >tsv &&
    test "$(wc -l <tsv)" = 13 && head -1 tsv | grep -q "^task	metric	run	measure	n	mean	ci_lo	ci_hi	baseline	rel_improvement_pct" &&
    grep -q "^math	accuracy	online	tokens	6	2.43333	.*	base	23.9583	5	-0.88	" tsv
'

test_expect 'runs are named after their files when no label is given, or by --label-field' '
    cl-judge --report -q --format json "$B" "$O" >rep.json &&
    jq -e ".runs == [\"report-base\", \"report-online\"]" rep.json &&
    records "$B" | jq -c ". + {model: (if .id == \"m1\" then \"x\" else \"y\" end)}" >lab.jsonl &&
    cl-judge --report -q --format json --label-field model lab.jsonl >rep2.json &&
    jq -e ".runs == [\"x\", \"y\"]" rep2.json
'

test_expect 'files of the same name get the parent directories that tell them apart; what cannot be told apart is refused' '
    mkdir -p a/base a/collab x/base && cp "$B" a/base/scored.jsonl && cp "$O" a/collab/scored.jsonl &&
    cl-judge --report -q --format json --baseline base a/base/scored.jsonl a/collab/scored.jsonl >rep.json &&
    jq -e ".runs == [\"base\", \"collab\"] and (.tasks[0].runs | map(.measures.metric.n)) == [6, 6]" rep.json &&
    cp "$B" x/base/scored.jsonl &&
    cl-judge --report -q --format json a/base/scored.jsonl x/base/scored.jsonl >rep.json &&
    jq -e ".runs == [\"a/base\", \"x/base\"]" rep.json &&
    cl-judge --report -q --format json --label scored a/base/scored.jsonl a/collab/scored.jsonl >rep.json &&
    jq -e ".runs == [\"scored\", \"collab\"]" rep.json &&
    zstd -q a/base/scored.jsonl -o a/base/scored.jsonl.zst &&
    { cl-judge --report -q a/base/scored.jsonl a/base/scored.jsonl.zst >out 2>err; test $? = 2; } &&
    grep -q "a/base/scored.jsonl: its run name cannot be told apart .*--label" err && ! test -s out &&
    { cl-judge --report -q a/base/scored.jsonl a/base/scored.jsonl >out 2>err; test $? = 2; } &&
    grep -q "given twice" err && ! test -s out &&
    cl-judge --report -q --format json --label one --label two a/base/scored.jsonl a/base/scored.jsonl >rep.json &&
    jq -e ".runs == [\"one\", \"two\"] and (.tasks[0].runs | map(.measures.metric.n)) == [6, 6]" rep.json
'

test_expect 'small token counts show enough digits to compare; the relative change comes from the unrounded means' '
    for i in 1 2; do echo "{\"id\":\"m$i\",\"task\":\"math\",\"scores\":{\"accuracy\":1,\"tokens\":5}}"; done >b.jsonl &&
    for i in 1 2; do echo "{\"id\":\"m$i\",\"task\":\"math\",\"scores\":{\"accuracy\":1,\"tokens\":12}}"; done >c.jsonl &&
    cl-judge --report -q --baseline b b.jsonl c.jsonl >t &&
    grep -q "^b .* 0.0050 \[0.0050, 0.0050\]" t && grep -q "^c .* 0.012 \[0.012, 0.012\]" t &&
    grep -q "^Rel. improv. c vs b .*-140.0%" t && grep -q "^Paired diff c - b .* 0.0070 \[0.0070, 0.0070\]" t
'

test_expect 'interactivity on the unit and the paper scale in one report is refused with exit 65 and the line' '
    { cat "$B"; echo "{\"id\":\"p\",\"task\":\"math\",\"scores\":{\"interactivity\":-1},\"judge\":{\"interactivity\":{\"scale\":\"paper\"}}}"; } >mixed.jsonl &&
    { cl-judge --report -q mixed.jsonl >out 2>err; test $? = 65; } &&
    grep -q "mixed.jsonl:9: .*paper.*unit" err && ! test -s out
'

test_expect '--metric chooses the task metric per task or for all tasks' '
    cl-judge --report -q --format json --metric math=tokens "$B" >a.json &&
    jq -e "[.tasks[].metric] == [\"tokens\", \"bleu\"] and (.tasks[0].runs[0].measures.metric.mean - 320000 | fabs < 1e-6)" a.json &&
    cl-judge --report -q --format json --metric "math=accuracy,interactivity" "$B" >b.json &&
    jq -e "[.tasks[].metric] == [\"accuracy\", \"interactivity\"] and .tasks[1].runs[0].measures.metric.mean == 75" b.json
    cl-judge --report -q --format json --metric "bleu,interactivity,math=accuracy" "$B" >c.json &&
    jq -e "[.tasks[].metric] == [\"accuracy\", \"interactivity\"]" c.json
'

test_expect 'Abg-CoQA items get the per-class accuracies, macro accuracy and macro F1 of the paper (Table 2)' '
    for x in "a1 true 1" "a2 true 0" "a3 true 0" "n1 false 1" "n2 false 1" "u1 null 0"; do
        set -- $x
        echo "{\"id\":\"$1\",\"task\":\"qa\",\"metadata\":{\"ambiguous\":$2},\"scores\":{\"clarify_or_answer\":$3}}"
    done >abg.jsonl &&
    cl-judge --report -q --format json abg.jsonl >rep.json &&
    jq -e ".tasks[0].metric == \"clarify_or_answer\" and .tasks[0].runs[0].measures.metric.n == 6" rep.json &&
    jq -e ".tasks[0].runs[0].abg | .ambiguous.n == 3 and .non_ambiguous.n == 2 and .non_ambiguous.acc == 100" rep.json &&
    jq -e ".tasks[0].runs[0].abg | (.ambiguous.acc - 100/3 | fabs) < 1e-9 and (.macro_acc - 200/3 | fabs) < 1e-9" rep.json &&
    jq -e ".tasks[0].runs[0].abg | (.macro_f1 - 100*(2/4 + 4/6)/2 | fabs) < 1e-9" rep.json &&
    cl-judge --report -q abg.jsonl >t && grep -Eq "^abg +qa +33\.3 \(n 3\) +100\.0 \(n 2\) +66\.7 +58\.3$" t
'

test_expect 'a baseline that names no run exits 65' '
    { cl-judge --report -q --baseline nosuch "$B" >out 2>err; test $? = 65; } && grep -q "nosuch" err
'

test_expect 'judge options with --report are a usage error (exit 2)' '
    { cl-judge --report --interactivity "$B" >out 2>err; test $? = 2; } && grep -q "report" err
'

test_expect '-o writes the report to a file and nothing to standard output' '
    cl-judge --report -q -o rep.txt --format tsv "$B" >out && ! test -s out && grep -q "^math	" rep.txt
'

test_expect '--plot draws a PNG chart with gnuplot: a valid PNG of the expected size' '
    command -v gnuplot >/dev/null || { echo "SKIP: gnuplot missing (scripts/install-deps installs gnuplot-nox)" >&2; exit 1; }
    cl-judge --report -q --baseline base --label base --label online --plot chart.png "$B" "$O" >/dev/null &&
    test -s chart.png &&
    python3 -c "
import struct, sys, zlib
d = open(\"chart.png\", \"rb\").read()
assert d[:8] == b\"\\x89PNG\\r\\n\\x1a\\n\", \"not a PNG\"
w, h = struct.unpack(\">II\", d[16:24])
assert (w, h) == (1200, 660), (w, h)
pos, chunks = 8, []
while pos < len(d):
    n, = struct.unpack(\">I\", d[pos:pos + 4]); t = d[pos + 4:pos + 8]
    assert zlib.crc32(d[pos + 4:pos + 8 + n]) == struct.unpack(\">I\", d[pos + 8 + n:pos + 12 + n])[0], t
    chunks.append(t); pos += 12 + n
assert chunks[0] == b\"IHDR\" and chunks[-1] == b\"IEND\" and b\"IDAT\" in chunks, chunks
"
'

test_expect 'paper-scale interactivity may be negative and is reported as given' '
    printf "%s\n" "{\"id\":\"a\",\"task\":\"math\",\"scores\":{\"accuracy\":1,\"interactivity\":-1},\"judge\":{\"interactivity\":{\"scale\":\"paper\"}}}" \
        "{\"id\":\"b\",\"task\":\"math\",\"scores\":{\"accuracy\":0,\"interactivity\":0},\"judge\":{\"interactivity\":{\"scale\":\"paper\"}}}" >p.jsonl &&
    cl-judge --report -q --format json --plot p.png p.jsonl >rep.json &&
    jq -e ".itr_scale == \"paper-eval\" and .tasks[0].runs[0].measures.itr.mean == -50" rep.json && test -s p.png
'
test_expect 'the report names the token counter, and refuses to mix two' '
    rec() { printf "{\"id\":\"%s\",\"task\":\"math\",\"scores\":{\"accuracy\":1,\"tokens\":900},\"metric_info\":{\"tokens\":{\"method\":\"%s\"}}}\n" "$1" "$2"; }
    { rec a cl100k_base; rec b cl100k_base; } >c.jsonl && { rec a cl100k_base; rec b words; } >mixed.jsonl &&
    cl-judge --report -q --format json c.jsonl | jq -e ".token_counter == \"cl100k_base\"" &&
    cl-judge --report -q --format table c.jsonl | grep -q "tokens (cl100k_base) in thousands" &&
    { cl-judge --report -q --format json mixed.jsonl >out 2>err; test $? = 65; } &&
    grep -q "tokens counted by .words. after records counted by .cl100k_base." err
'
test_done
