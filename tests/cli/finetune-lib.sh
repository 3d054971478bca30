# tests/cli/finetune-lib.sh — tiny models and data for the cl-finetune tests (sourced after lib.sh).
#
#   ft_data DIR   cfg.json (a 2-layer d32 Llama), sft.jsonl (8 dialogues to memorise),
#                 pairs.jsonl (the same prompts: the right colour chosen, a refusal rejected)
#   ft_base DIR   ft_data, then a from-scratch model (own BPE tokenizer) that memorised sft.jsonl,
#                 in DIR/base/final
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
    cl-finetune --init "$1/cfg.json" --train-tokenizer "$1/sft.jsonl" --vocab 300 --sft "$1/sft.jsonl" \
        --run "$1/base" --lr 1e-2 --schedule constant --epochs 150 --batch 8 --seed 1 -q
}
