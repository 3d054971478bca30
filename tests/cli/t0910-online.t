#!/bin/sh
# pipelines/online.mk: one online DPO round and one GRPO round end to end on a tiny local:
# policy (the colour model of finetune-lib.sh) with the judges scripted by
# tests/fixtures/pipelines/online-world.jsonl; the per-round benchmark, its table and chart; a
# round killed during training resumes at its checkpoint without sampling again and ends with
# the bytes of an uninterrupted round.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
. "$(dirname "$0")/mock.sh"
S="$_top/shared"
{ ft_base "$S" 4096 &&
  cl-seed -q --preset math --limit 4 "$ROOT/examples/math.jsonl" >"$S/states.zst" &&
  cl-seed -q --preset math --limit 2 "$ROOT/examples/math.jsonl" >"$S/held.zst"; } 2>"$_top/base.err" ||
    { cat "$_top/base.err"; echo "Bail out! cannot train the base model"; exit 1; }
M="$S/base/final"
command -v gnuplot >/dev/null || skip_all 'gnuplot is not installed (apt-get install gnuplot-nox)'

# online OUT [make arguments]: the rounds on the states, benchmarked on the held-out seeds
online() {
    _out=$1; shift
    make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" BASE="$M" OUT="$_out" BIN="$CL_BIN" \
        API_BASE="$MOCK_URL" USER_MODEL="local:$M" JUDGE=openai:j SAMPLES=2 MIN_GAP=0 \
        ROLLOUT_FLAGS="--user-style userlm --user-max-tokens 16" ASSISTANT_MAX_TOKENS=16 \
        FT_FLAGS="--lr 1e-3 --batch 2" BOOTSTRAP=100 "$@"
}
W="$FIXTURES/pipelines/online-world.jsonl"

test_expect 'an online DPO round: the policy samples, MR ranks, DPO trains its adapter, both policies benchmarked' '
    mock_start --script "$W" && online o ROUNDS=1 STEPS=2 HELDOUT="$S/held.zst" all plot 2>log || { cat log; false; } &&
    test "$(cat o/round-0/policy)" = "local:$M" &&
    test "$(cat o/round-1/policy)" = "local:$M+adapter=$PWD/o/round-1/run/final" &&
    zstd -dc o/round-1/engine/scored.jsonl.zst >scored &&
    jq -s -e --arg p "local:$M" "length >= 4 and all(.[]; .candidates | length == 2 and all(.[]; .source == \$p))" scored &&
    test "$(zstd -dc o/round-1/engine/dpo.jsonl.zst | wc -l)" -ge 1 &&
    jq -s -e "length == 2 and all(.[]; has(\"dpo_loss\"))" o/round-1/run/metrics.jsonl &&
    test -f o/round-1/run/final/adapter_model.safetensors && jq -e ".r == 8" o/round-1/run/final/adapter_config.json &&
    grep -q "^round-1 " o/round-1/eval/report.txt && grep -q "^round-0 " o/round-0/eval/report.txt &&
    jq -s -e "map(.round) == [0, 1] and all(.[]; .records == 2 and (.metric.mean | type) == \"number\"
              and (.itr.mean | type) == \"number\" and (.tokens.mean | type) == \"number\")
              and (.[0].mr | type) == \"number\" and .[1].mr == null and .[1].round_s >= 0" o/rounds.jsonl &&
    test "$(head -c 4 o/rounds.png | tail -c 3)" = PNG
'
test_expect 'METHOD=grpo samples GROUP replies per state from the policy (with their log-probs) and trains --grpo on their MR; round 2 continues adapter and optimizer' '
    mock_start --script "$W" && online g ROUNDS=2 STEPS=2 METHOD=grpo GROUP=3 2>log || { cat log; false; } &&
    zstd -dc g/round-1/engine/scored.jsonl.zst >scored && zstd -dc g/round-1/groups.jsonl.zst >groups &&
    jq -s -e "all(.[]; .candidates | length == 3)" scored &&
    test "$(wc -l <groups)" = "$(jq -s "map(select(all(.candidates[]; .mr.mean != null))) | length" scored)" &&
    jq -s -e --slurpfile s scored "all(.[]; (.completions | length) == 3 and (.rewards | length) == 3)
        and (map(.rewards) == [\$s[] | [.candidates[].mr.mean]])" groups &&
    jq -s -e "all(.[]; (.logps | length) == 3 and all(.logps[]; length > 0))" groups &&
    grep -q "[1-9][0-9]* replies carry the sampler" log &&
    jq -s -e "length == 2 and all(.[]; has(\"pg_loss\") and has(\"kl\"))" g/round-1/run/metrics.jsonl &&
    ! test -e g/rounds.jsonl &&
    jq -e "index(\"g/round-1/run/final\") != null and index(\"g/round-1/run/last\") != null" g/round-2/run/args.json &&
    test "$(cat g/round-2/run/last/adam_t0)" = 2 &&
    test "$(cat g/round-2/policy)" = "local:$M+adapter=$PWD/g/round-2/run/final"
'
test_expect 'REF=round: round 2 samples with the merge of round 1 and trains a fresh adapter on it' '
    mock_start --script "$W" && online r ROUNDS=2 STEPS=2 REF=round 2>log || { cat log; false; } &&
    test "$(cat r/round-1/policy)" = "local:$PWD/r/round-1/run/merged" &&
    test "$(cat r/round-2/policy)" = "local:$PWD/r/round-2/run/merged" &&
    zstd -dc r/round-2/engine/scored.jsonl.zst |
        jq -s -e --arg p "local:$PWD/r/round-1/run/merged" "length > 0 and all(.[].candidates[]; .source == \$p)" &&
    jq -e "index(\"r/round-1/run/merged\") != null and index(\"--adapter\") == null" r/round-2/run/args.json &&
    test -f r/round-2/run/merged/model.safetensors
'
test_expect 'FULL=1 ANCHOR=2: every weight trained with the MR-best dialogues as SFT loss; round 2 continues weights and AdamW state' '
    mock_start --script "$W" && online f ROUNDS=2 STEPS=2 FULL=1 ANCHOR=2 2>log || { cat log; false; } &&
    test "$(cat f/round-1/policy)" = "local:$PWD/f/round-1/run/final" &&
    test "$(cat f/round-2/policy)" = "local:$PWD/f/round-2/run/final" &&
    test -f f/round-2/run/final/model.safetensors && ! test -e f/round-2/run/final/adapter_config.json &&
    zstd -dc f/round-2/engine/scored.jsonl.zst |
        jq -s -e --arg p "local:$PWD/f/round-1/run/final" "length > 0 and all(.[].candidates[]; .source == \$p)" &&
    jq -e "index(\"--full\") != null and index(\"f/round-1/run/final\") != null and index(\"f/round-1/run/last\") != null
           and index(\"f/round-2/engine/sft.jsonl.zst\") != null and index(\"--anchor-weight\") != null" f/round-2/run/args.json &&
    jq -s -e "length == 2 and all(.[]; (.anchor_loss | type) == \"number\" and has(\"dpo_loss\"))" f/round-2/run/metrics.jsonl &&
    test "$(cat f/round-2/run/last/adam_t0)" = 2
'
test_expect 'a round killed while training resumes at its checkpoint, samples nothing again, ends with the same bytes' '
    mock_start --script "$W" && online a ROUNDS=1 STEPS=6 SAVE_EVERY=2 2>log || { cat log; false; } &&
    for attempt in 1 2 3 4 5; do
        rm -rf b && { setsid make -s -f "$ROOT/pipelines/online.mk" STATES="$S/states.zst" BASE="$M" OUT=b \
            BIN="$CL_BIN" API_BASE="$MOCK_URL" USER_MODEL="local:$M" JUDGE=openai:j SAMPLES=2 MIN_GAP=0 \
            ROLLOUT_FLAGS="--user-style userlm --user-max-tokens 16" ASSISTANT_MAX_TOKENS=16 \
            FT_FLAGS="--lr 1e-3 --batch 2" ROUNDS=1 STEPS=6 SAVE_EVERY=2 >/dev/null 2>&1 & pid=$!; } &&
        while ! test -e b/round-1/run/checkpoint-000002 && kill -0 $pid 2>/dev/null; do sleep 0.01; done
        kill -9 -$pid 2>/dev/null; wait $pid
        test -e b/round-1/policy || break
    done &&
    ! test -e b/round-1/policy && test -e b/round-1/engine/scored.jsonl.zst &&
    online b ROUNDS=1 STEPS=6 SAVE_EVERY=2 2>log2 || { cat log2; false; } &&
    grep -q "resuming" log2 && ! grep -q "cl-rollout" log2 &&
    cmp a/round-1/run/final/adapter_model.safetensors b/round-1/run/final/adapter_model.safetensors &&
    same_metrics a/round-1/run/metrics.jsonl b/round-1/run/metrics.jsonl &&
    sed "s|/a/round-1/|/b/round-1/|" a/round-1/policy | cmp - b/round-1/policy
'
test_done
