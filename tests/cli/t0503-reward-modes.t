#!/bin/sh
# R* and MR in every reward mode, on fixtures whose numbers are worked out by hand below.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"
near() { jq -e "($1) as \$x | ($2) as \$y | ((\$x - \$y) | fabs) < 1e-12" "$3"; }

# Document fixture, usage tokens of the forward part (candidate + future, both roles):
# c0/f0 12+5+11 = 28, c0/f1 12+4+5 = 21, c1/f0 4+3+7 = 14; assistant-only over the whole
# session (v2): 12+11 = 23, 12+5 = 17, 4+7 = 11.  c0/f0's extracted document equals the
# reference, so its bleu is 1.
test_expect 'paper: R = task + interactivity - min(λ·tokens, 1), λ = 1e-4 for documents' '
    cl-reward -q -Z --reward paper --metric bleu --tokens usage "$F/branch-document.jsonl" >out &&
    near ".candidates[0].futures[0].R" "1 + 1 - 0.0028" out &&
    near ".candidates[0].futures[1] | .R" ".candidates[0].futures[1] | .scores.bleu + 0.5 - 0.0021" out &&
    near ".candidates[1].futures[0] | .R" ".candidates[1].futures[0] | .scores.bleu - 0.0014" out &&
    near ".candidates[0].mr.mean" "[.candidates[0].futures[].R] | add / 2" out &&
    jq -e ".candidates[0].mr.reward == \"paper\" and .candidates[0].futures[0].metric_info.tokens.scope == \"forward\"" out
'
test_expect 'paper: the token penalty is capped at 1' '
    cl-reward -q -Z --reward paper --lambda 0.1 --metric bleu --tokens usage "$F/branch-document.jsonl" >out &&
    near ".candidates[0].futures[0].R" "1" out
'
test_expect 'v2: bleu - 0.1 · assistant tokens of the whole session / 1000, no interactivity for documents' '
    cl-reward -q -Z --reward v2 --metric bleu --tokens usage "$F/branch-document.jsonl" >out &&
    near ".candidates[0].futures[0].R" "1 - 0.1 * 23 / 1000" out &&
    jq -e "[.candidates[].futures[].scores.tokens] == [23, 17, 11]" out &&
    jq -e ".candidates[0].futures[0].metric_info.tokens | .scope == \"session\" and .roles == \"assistant\"" out
'
test_expect 'verl: words after the prompt, each term clamped; MR clamps the metric means' '
    cl-reward -q -Z --reward verl --metric bleu "$F/branch-document.jsonl" >out &&
    jq -e "[.candidates[0].futures[].scores.tokens] == [21, 16]" out &&
    near ".candidates[0].futures[0].R" "1 + 1 - 0.0021" out &&
    near ".candidates[0].mr.mean" "(.candidates[0].futures | map(.scores.bleu) | add / 2) + 0.75 - 0.00185" out &&
    jq -e ".candidates[0].futures[0].metric_info.tokens.method == \"words\"" out
'
test_expect 'weights: any signed sum, with per-metric means in mr' '
    cl-reward -q -Z --weights "interactivity=2,tokens=-0.001" --metric tokens --tokens usage "$F/branch-document.jsonl" >out &&
    near ".candidates[0].futures[0].R" "2 - 0.028" out &&
    near ".candidates[0].mr.metrics.tokens" "24.5" out &&
    near ".candidates[0].mr.std" "((2 - 0.028) - (1 - 0.021)) / 2" out
'
# Math fixture, whole conversations, word counts: m-1 17 words (11 assistant), m-2 and m-3 4.
test_expect 'paper on conversations: accuracy + interactivity - min(5e-4 · tokens, 1)' '
    cl-reward -q -Z --reward paper --tokens words "$F/full-math.jsonl" >out &&
    jq -s -e "map(.R) | (.[0] - 1.4915 | fabs) < 1e-12 and (.[1] - 0.998 | fabs) < 1e-12 and (.[2] + 0.002 | fabs) < 1e-12" out &&
    jq -s -e "map(.mr) == [null, null, null]" out
'
test_expect 'v2 on math: accuracy + 0.5 · interactivity - 0.5 · assistant tokens / 1000' '
    cl-reward -q -Z --reward v2 --tokens words "$F/full-math.jsonl" >out &&
    jq -s -e ".[0].R - (1 + 0.25 - 0.0055) | fabs < 1e-12" out
'
test_expect '--task-metric swaps the LLM accuracy for the local answer check' '
    cl-reward -q -Z --reward paper --task-metric math_equiv --metric math --tokens words "$F/full-math.jsonl" >out &&
    jq -s -e "map(.scores.math_equiv) == [1, 1, 0] and (.[2].R + 0.002 | fabs) < 1e-12" out
'
test_expect 'a task without a rule is an error for the record, with the fix named' '
    jq -c ".task = \"qa\"" "$F/full-math.jsonl" >in &&
    { cl-reward -Z --reward paper --tokens words in >out 2>err; test $? = 1; } &&
    grep -q "give --task-metric" err && test "$(jq -s "map(select(.error)) | length" out)" = 3
'
test_done
