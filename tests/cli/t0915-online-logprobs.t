#!/bin/sh
# Sampling log-probs recorded by local: (GRPO's old policy): a request with "logprobs": true gets
# OpenAI's choices[].logprobs.content; cl-rollout --logprobs records them as candidates[].logps;
# their sum is the log-prob a training forward of the same reply computes under the same
# weights; cl-finetune --grpo takes them as the sampler's log-probs; without the flag nothing
# changes.  On the shipped world base (examples/world-base) with the world: user.
. "$(dirname "$0")/lib.sh"
BASE="$ROOT/examples/world-base"
{ cl-seed --list-presets 2>/dev/null | grep -q '^world' && test -f "$BASE/model.safetensors"; } ||
    skip_all 'this build has no offline world (cl-seed --preset world, world: specs, examples/world-base)'
export OMP_NUM_THREADS=1
S="$_top/shared"
mkdir -p "$S"
cl-seed -q --preset world --split train --limit 6 --seed 3 -o "$S/seeds.zst" || { echo "Bail out! no world seeds"; exit 1; }
branch() { # OUT [flags]: one branch step, 3 hot candidates of the base per state, no futures
    _o=$1; shift
    cl-rollout --branch -q --assistant "local:$BASE" --user world: --assistant-temperature 1.5 --assistant-max-tokens 40 \
        -k 3 --samples 0 --max-turns 1 --proact-ratio 0 --system-prompt-ratio 0 --cache "$S/cache" "$@" -o "$_o" "$S/seeds.zst"
}

test_expect 'cl-rollout --logprobs: every candidate carries one log-prob (<= 0) per sampled token, the end of turn included' '
    branch "$S/lp.zst" --logprobs && zstd -dc "$S/lp.zst" >"$S/lp" &&
    jq -s -e "length == 6 and all(.[].candidates[]; (.logps | type) == \"array\" and (.logps | length) > 0 and
              (.logps | length) == .usage.completion_tokens and all(.logps[]; . <= 0))" "$S/lp"
'
# The replies that ended on their end of turn and are valid text render to the tokens sampled (a
# reply cut at the token limit gets an end of turn in training it never sampled).
test_expect 'the recorded sum is the training forward log-prob of the same reply under the same weights' '
    jq -c ".candidates[] as \$c | select(\$c.usage.completion_tokens < 40 and (\$c.content | test(\"\\ufffd\") | not)) |
            {prompt: [.messages[] | {role, content}], chosen: \$c.content, rejected: \$c.content, want: (\$c.logps | add)}" \
        "$S/lp" >pairs.jsonl &&
    n=$(wc -l <pairs.jsonl) && test "$n" -ge 8 &&
    cl-finetune -q --model "$BASE" --full --dpo pairs.jsonl --max-steps 1 --batch "$n" --lr 0 --run r &&
    jq -s -e --slurpfile m r/metrics.jsonl "(map(.want) | add / length) as \$w |
              ((\$m[0][\"logps/chosen\"] - \$w) | fabs) < 1e-5 * (1 + (\$w | fabs)) and \$w < -0.5" pairs.jsonl
'
test_expect 'cl-finetune --grpo takes them as the sampler log-probs of every reply whose tokens they count' '
    jq -c "{prompt: [.messages[] | {role, content}], completions: [.candidates[].content],
            rewards: [range(.candidates | length)], logps: [.candidates[].logps]}" "$S/lp" >groups.jsonl &&
    cl-finetune --model "$BASE" --full --grpo groups.jsonl --max-steps 1 --batch 6 --lr 0 --run g 2>err &&
    n=$(sed -n "s/.* \([0-9]*\) replies carry the sampler.*/\1/p" err) &&
    k=$(grep -c "another number of tokens" err) &&
    test "$n" -ge 1 && { test "$n" = 18 || test "$k" = 1; } && jq -e ".pg_clipfrac == 0" g/metrics.jsonl
'
test_expect 'without --logprobs: no logps, the same replies (asking for log-probs changes no sample)' '
    branch plain.zst && zstd -dc plain.zst >plain &&
    jq -s -e "all(.[].candidates[]; has(\"logps\") | not)" plain &&
    jq -c "[.candidates[].content]" plain >a && jq -c "[.candidates[].content]" "$S/lp" >b && diff a b
'
test_done
