#!/bin/sh
# cl-finetune --grpo: a group's better-rewarded reply gains log-probability; a group of equal
# rewards moves nothing; the reference is cached per token; recorded sampling log-probs enter
# the ratio and its clip; bad rows are refused naming file:line and the field (exit 65); the
# verl-grpo preset; a killed run resumes to the same bytes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
# one group per prompt: a refusal rewarded 1, the memorised answer 0
jq -c '{prompt: .messages[:1], completions: ["I do not know.", .messages[1]], rewards: [1, 0]}' \
    "$S/sft.jsonl" >"$S/groups.jsonl"
# the same replies as DPO pairs: cl-finetune --dpo --lr 0 reports the policy's log-probs of both
jq -c '{prompt, chosen: [{role: "assistant", content: .completions[0]}], rejected: [.completions[1]]}' \
    "$S/groups.jsonl" >"$S/probe.jsonl"
grpo() { cl-finetune --model "$S/base/final" --lora r=4,alpha=8 --lr 1e-3 --batch 4 --seed 2 --log-every 0 "$@"; }
logps() { # ADAPTER-FLAGS: [chosen, rejected] summed log-probs under the policy
    rm -rf probe && cl-finetune --model "$S/base/final" --dpo "$S/probe.jsonl" --lora r=4,alpha=8 "$@" --lr 0 \
        --max-steps 1 --batch 8 --run probe -q && jq -c '[.["logps/chosen"], .["logps/rejected"]]' probe/metrics.jsonl
}

test_expect 'GRPO raises the log-prob of the rewarded reply and lowers the other one' '
    grpo --grpo "$S/groups.jsonl" --max-steps 8 --run r &&
    logps >before && logps --adapter r/final >after &&
    jq -s -e ".[0][0] + 1 < .[1][0] and .[1][1] < .[0][1]" before after
'
test_expect 'the first step: KL 0 (the policy is the reference), ratio 1 (nothing clipped); KL grows after' '
    grpo --grpo "$S/groups.jsonl" --max-steps 6 --run r 2>err &&
    jq -s -e ".[0].kl == 0 and .[0].pg_clipfrac == 0 and .[-1].kl > 0 and
              ((.[0].loss - .[0].pg_loss - 0.001 * .[0].kl) | fabs) < 1e-12" r/metrics.jsonl &&
    grep -q "8 groups, 16 replies (0 groups with equal rewards" err
'
test_expect 'a group with equal rewards has zero advantages: no gradient at all, even with the KL' '
    jq -c ".rewards = [0.5, 0.5]" "$S/groups.jsonl" >flat.jsonl &&
    grpo --grpo flat.jsonl --max-steps 3 --run r 2>err &&
    jq -s -e "length == 3 and all(.[]; .grad_norm == 0 and .pg_loss == 0 and .kl == 0)" r/metrics.jsonl &&
    grep -q "8 groups with equal rewards train only the KL term" err
'
test_expect '--adv-norm mean: a group 0.02 apart moves the policy 1/50 as much as one 1 apart; std: as much' '
    jq -c ".rewards = [0.51, 0.49]" "$S/groups.jsonl" >close.jsonl &&
    grpo --grpo "$S/groups.jsonl" --max-steps 1 --run far-mean --adv-norm mean &&
    grpo --grpo close.jsonl --max-steps 1 --run close-mean --adv-norm mean &&
    grpo --grpo "$S/groups.jsonl" --max-steps 1 --run far-std &&
    grpo --grpo close.jsonl --max-steps 1 --run close-std &&
    jq -s -e "(.[1].grad_norm / .[0].grad_norm - 0.02 | fabs) < 1e-4 and
              (.[3].grad_norm / .[2].grad_norm - 1 | fabs) < 1e-3" \
        far-mean/metrics.jsonl close-mean/metrics.jsonl far-std/metrics.jsonl close-std/metrics.jsonl &&
    { grpo --grpo close.jsonl --max-steps 1 --run bad --adv-norm median 2>err; test $? = 2; } &&
    grep -q "adv-norm: unknown value .median. (std, mean)" err
'
test_expect 'the reference log-probs are cached per token beside the run; --kl-coef 0 computes none' '
    grpo --grpo "$S/groups.jsonl" --max-steps 1 --run r 2>err &&
    test "$(head -c 8 r/ref-token-logps.bin)" = CLFTGRF1 &&
    n=$(sed -n "s/.*reference log-probs of \([0-9]*\) tokens.*/\1/p" err) && test "$n" -gt 16 &&
    test "$(wc -c <r/ref-token-logps.bin)" = $((8 + 16 + 4 * n)) &&
    grpo --grpo "$S/groups.jsonl" --max-steps 1 --run k --kl-coef 0 && ! test -e k/ref-token-logps.bin &&
    jq -e ".kl == 0" k/metrics.jsonl
'
# recorded log-probs far below the policy's make the rewarded reply's ratio exceed 1 + 0.2: clipped
test_expect 'recorded sampling log-probs of the reply tokens enter the ratio and its clip; of another length, the ratio falls back to 1' '
    head -1 "$S/groups.jsonl" | jq -c ".logps = [[0], [0]]" >one.jsonl &&
    grpo --grpo one.jsonl --max-steps 1 --run a 2>err &&
    grep -q "one.jsonl: 2 replies carry log-probs of another number of tokens than they render to" err &&
    grep -q "0 replies carry the sampler" err && jq -e ".pg_clipfrac == 0" a/metrics.jsonl &&
    toks() { # I: the trained tokens of reply I (its content and end of turn), from its reference
        head -1 "$S/groups.jsonl" | jq -c "{prompt, completions: [.completions[$1]], rewards: [0]}" >c$1.jsonl &&
        grpo --grpo c$1.jsonl --max-steps 1 --run t$1 2>e$1 && sed -n "s/.*reference log-probs of \([0-9]*\) tokens.*/\1/p" e$1
    } &&
    n0=$(toks 0) && n1=$(toks 1) && test "$n0" -gt 1 && test "$n1" -gt 1 &&
    head -1 "$S/groups.jsonl" | jq -c --argjson a $n0 --argjson b $n1 ".logps = [[range(\$a) | -30], [range(\$b) | -1]]" >one.jsonl &&
    grpo --grpo one.jsonl --max-steps 1 --run c 2>err && grep -q "2 replies carry the sampler" err &&
    ! grep -q "another number" err && jq -e ".pg_clipfrac > 0" c/metrics.jsonl
'
bad() { # NAME JQ-EDIT MESSAGE: the first group edited is refused on line 2 with MESSAGE
    { head -1 "$S/groups.jsonl"; head -1 "$S/groups.jsonl" | jq -c "$2"; } >"$1.jsonl" &&
    { grpo --grpo "$1.jsonl" --run "r$1" 2>err; test $? = 65; } && grep -qF "$1.jsonl:2: $3" err
}
test_expect 'bad rows are refused with file:line and the field (exit 65)' '
    bad norew "del(.rewards)" "field \"rewards\" must be an array of numbers" &&
    bad strrew ".rewards = [1, \"x\"]" "field \"rewards\" must be an array of numbers" &&
    bad short ".rewards = [1]" "field \"rewards\" has 1 values for 2 completions" &&
    bad empty ".completions = []" "field \"completions\" must be a non-empty array of replies" &&
    bad badmsg ".completions = [{role: 1}, \"x\"]" "completions[0]: field \"completion\"" &&
    bad noprompt "del(.prompt)" "completions[0]: field \"prompt\" is missing" &&
    bad lpshape ".logps = [[0]]" "field \"logps\" must be an array of 2 arrays"
'
test_expect '--grpo has no held-out loss: --eval is a usage error (exit 2)' '
    { grpo --grpo "$S/groups.jsonl" --eval "$S/groups.jsonl" --run r 2>err; test $? = 2; } &&
    grep -q "cl-rollout and cl-judge" err
'
test_expect 'the verl-grpo preset: lr 1e-6 constant, 64 replies per step, clip 0.2, KL 0.001' '
    cl-finetune --preset verl-grpo --model "$S/base/final" --grpo "$S/groups.jsonl" --max-steps 2 --run r -q &&
    jq -s -e "length == 2 and all(.[]; .lr == 1e-06) and .[0].tokens > 0" r/metrics.jsonl &&
    jq -e "index(\"verl-grpo\")" r/args.json
'
test_expect '--optimizer-from: 2 steps, then 2 more continuing adapter and AdamW, equal 4 steps at once' '
    set -- --model "$S/base/final" --dpo "$S/pairs.jsonl" --lr 1e-2 --schedule constant --batch 8 --seed 4 -q &&
    cl-finetune "$@" --lora r=4,alpha=8 --max-steps 4 --run a &&
    cl-finetune "$@" --lora r=4,alpha=8 --max-steps 2 --run b &&
    cl-finetune "$@" --adapter b/final --optimizer-from b/last --max-steps 2 --save-every 1 --run c &&
    cmp a/final/adapter_model.safetensors c/final/adapter_model.safetensors &&
    test "$(cat c/checkpoint-000001/adam_t0)" = 2 &&
    cl-finetune "$@" --adapter c/final --optimizer-from c/last --max-steps 1 --run d &&
    cl-finetune "$@" --lora r=4,alpha=8 --max-steps 5 --run e &&
    cmp e/final/adapter_model.safetensors d/final/adapter_model.safetensors &&
    cl-finetune "$@" --adapter b/final --max-steps 2 --run fresh &&
    ! cmp -s a/final/adapter_model.safetensors fresh/final/adapter_model.safetensors &&
    { cl-finetune "$@" --lora r=8,alpha=8 --optimizer-from b/last --max-steps 1 --run bad 2>err; test $? = 65; } &&
    grep -q "b/last/trainer_state.bin: holds moments of" err
'
test_expect 'a GRPO run killed mid-run and resumed ends with the same adapter and metrics' '
    set -- --model "$S/base/final" --grpo "$S/groups.jsonl" --lora r=4,alpha=8 --lr 1e-3 --batch 2 \
        --max-steps 16 --save-every 2 --seed 3 -q &&
    cl-finetune "$@" --run a && kill_at b 000008 cl-finetune "$@" --run b && ! test -e b/final &&
    cl-finetune --resume b && cmp a/final/adapter_model.safetensors b/final/adapter_model.safetensors &&
    same_metrics a/metrics.jsonl b/metrics.jsonl
'
test_done
