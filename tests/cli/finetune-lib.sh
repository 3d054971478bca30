# tests/cli/finetune-lib.sh — tiny models and data for the cl-finetune tests (sourced after lib.sh).
#
#   ft_data DIR   cfg.json (a 2-layer d32 Llama), sft.jsonl (8 dialogues to memorise),
#                 pairs.jsonl (the same prompts: the right colour chosen, a refusal rejected)
#   ft_base DIR [POSITIONS]   ft_data, then a from-scratch model (own BPE tokenizer) that
#                 memorised sft.jsonl, in DIR/base/final; POSITIONS sets its context (default 128;
#                 4096 holds cl-rollout's simulator prompts)
#   kill_at, same_metrics   resume checks (below)
# One thread: the tiny shapes run fastest single-threaded and results stay comparable.
export OMP_NUM_THREADS=1
FT="$CL_TESTBIN/ft"

ft_data() {
    mkdir -p "$1" &&
    cat >"$1/cfg.json" <<'CFG' &&
{"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
 "rope_theta": 10000, "tie_word_embeddings": false}
CFG
    jq -nc '["red","blue","green","yellow","purple","orange","black","white"] | to_entries[] |
        {messages: [{role: "user", content: "What is color \(.key)?"},
                    {role: "assistant", content: "Color \(.key) is \(.value)."}]}' >"$1/sft.jsonl" &&
    jq -c '{prompt: [.messages[0]], chosen: [.messages[1]],
            rejected: [{role: "assistant", content: "I do not know."}]}' "$1/sft.jsonl" >"$1/pairs.jsonl"
}

ft_base() {
    ft_data "$1" &&
    if [ -n "${2:-}" ]; then jq ".max_position_embeddings = $2" "$1/cfg.json" >"$1/cfg.tmp" && mv "$1/cfg.tmp" "$1/cfg.json"; fi &&
    cl-finetune --init "$1/cfg.json" --train-tokenizer "$1/sft.jsonl" --vocab 300 --sft "$1/sft.jsonl" \
        --run "$1/base" --lr 1e-2 --schedule constant --epochs 150 --batch 8 --seed 1 -q
}

# kill_at RUN STEP CMD...: starts CMD, SIGKILLs it once RUN/checkpoint-STEP exists.  On a
# loaded machine this shell may not run again before CMD has finished; that attempt proves
# nothing about resuming, so it is made again (in a fresh RUN), up to five times.
kill_at() {
    run=$1 step=$2; shift 2
    for attempt in 1 2 3 4 5; do
        rm -rf "$run"
        "$@" & pid=$!
        while ! test -e "$run/checkpoint-$step" && kill -0 $pid 2>/dev/null; do sleep 0.01; done
        kill -9 $pid 2>/dev/null; wait $pid
        test -e "$run/final" || return 0
    done
    return 0
}
same_metrics() { # everything but the clock
    jq -c "del(.tokens_per_s, .elapsed_s, .cpu_s)" "$1" >m1 && jq -c "del(.tokens_per_s, .elapsed_s, .cpu_s)" "$2" >m2 && cmp m1 m2
}
