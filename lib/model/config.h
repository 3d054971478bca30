/* config.h — the shape and numerics of a Llama-family decoder, read from a HF config.json.
 *
 * Owns: cl_llama_config (model_type llama / qwen2 / mistral-free Llama shapes such as SmolLM
 * and TinyLlama), its validation, and the RoPE inverse frequencies including the llama3
 * "rope_scaling" remap.  Must not know about weights, files other than config.json, or
 * training. */
#ifndef CL_MODEL_CONFIG_H
#define CL_MODEL_CONFIG_H

#include <stddef.h>

#include "core/err.h"

#define CL_MAX_EOS 8

typedef struct cl_llama_config {
    char model_type[16];  /* "llama" or "qwen2" */
    int vocab;            /* vocab_size */
    int hidden;           /* hidden_size */
    int inter;            /* intermediate_size */
    int layers;           /* num_hidden_layers */
    int heads;            /* num_attention_heads */
    int kv_heads;         /* num_key_value_heads (default heads) */
    int head_dim;         /* head_dim (default hidden / heads) */
    int max_pos;          /* max_position_embeddings */
    double rms_eps;       /* rms_norm_eps */
    double rope_theta;    /* rope_theta */
    int rope_llama3;      /* rope_scaling.rope_type == "llama3" */
    double rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max;    /* original_max_position_embeddings */
    int qkv_bias;         /* q/k/v projections carry a bias (qwen2 always; llama attention_bias) */
    int o_bias;           /* o_proj bias (llama attention_bias) */
    int mlp_bias;         /* gate/up/down bias (llama mlp_bias) */
    int tie_embeddings;   /* tie_word_embeddings: no lm_head.weight */
    int bos_id;           /* -1 when absent */
    int eos_ids[CL_MAX_EOS], n_eos;
} cl_llama_config;

/* Parses config.json text; `what` names it in messages ("DIR/config.json").  Unknown
 * model_type, hidden_act other than silu, missing or inconsistent sizes are errors
 * (CL_EXIT_CONFIG) naming the field. */
int cl_config_parse(cl_llama_config *c, const char *text, size_t len, const char *what, cl_err *e);
/* Reads and parses a config.json file. */
int cl_config_load(cl_llama_config *c, const char *path, cl_err *e);

/* Checks the invariants the kernels rely on (heads divisible by kv_heads, even head_dim <= 512,
 * positive sizes).  cl_config_parse calls it; callers building a config by hand should too. */
int cl_config_check(const cl_llama_config *c, const char *what, cl_err *e);

/* inv_freq[i] for i < head_dim/2: theta^(-2i/head_dim), remapped by llama3 scaling when set. */
void cl_rope_inv_freq(const cl_llama_config *c, double *inv_freq);

/* Number of parameters (embedding counted once when tied). */
long cl_config_params(const cl_llama_config *c);

#endif
