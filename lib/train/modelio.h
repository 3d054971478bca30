/* modelio.h — model directories on disk <-> a cl_llama in memory.
 *
 * Owns: the glue between the model's HF-named tensor table and the file formats: loading a
 * model directory (config.json, model.safetensors or shards, tokenizer.json) with name and
 * shape checks; creating a new randomly initialised model from a config (with a byte-level BPE
 * tokenizer trained on a corpus, in the Llama-3 chat layout); writing full weights, PEFT
 * adapters (and reading them back with shape checks), merged models and GGUF exports; the
 * choice of chat format from the tokenizer; and greedy decoding (model/engine.h) for tests.
 * Must not know: training loops, losses or data files. */
#ifndef CL_TRAIN_MODELIO_H
#define CL_TRAIN_MODELIO_H

#include <stddef.h>

#include "core/err.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/lora.h"
#include "model/tokenizer.h"

typedef struct cl_ft_model {
    cl_llama *m;
    cl_tokenizer *tok;
    char *config_json;       /* config.json text as read (or as written by cl_ft_model_init) */
    char *tokenizer_json;    /* tokenizer.json bytes */
    size_t config_len, tokenizer_len;
    char src[4096];          /* the directory it came from, absolute ("" for a new model):
                              * adapter_config.json names the base by it */
    cl_chat_format format;
    int pad_id;              /* eos (or 0) used to pad rows */
    cl_lora_config lora;     /* adapters as added (rank 0: none) */
} cl_ft_model;

/* Sets fm->src to dir made absolute (as given when it cannot be resolved). */
void cl_ft_model_set_src(cl_ft_model *fm, const char *dir);

/* Loads dir.  dtype CL_BF16 keeps projection weights in bf16 (LoRA only); flags are
 * cl_llama_new's (CL_LLAMA_TRAIN_BASE, 1: gradients for every base tensor; CL_LLAMA_DECODE: a
 * model to decode with).  Unknown architectures, missing or misshapen tensors and
 * unexpected ones are errors naming the file and the tensor. */
int cl_ft_model_load(cl_ft_model *fm, const char *dir, cl_dtype dtype, int flags, cl_err *e);

/* A new model: config_path is a (partial) config.json — vocab_size, bos/eos ids default to the
 * tokenizer's; the tokenizer is tokenizer_path, or trained from corpus_path (JSONL with
 * "messages" dialogues or "text" rows; plain text lines otherwise) to corpus_vocab entries.
 * Weights are N(0, 0.02) from seed (residual output projections scaled by 1/sqrt(2 layers)). */
int cl_ft_model_init(cl_ft_model *fm, const char *config_path, const char *tokenizer_path,
                     const char *corpus_path, int corpus_vocab, uint64_t seed, int full, cl_err *e);

void cl_ft_model_free(cl_ft_model *fm);

/* Picks the chat format: name ("auto" or NULL: llama3 when the tokenizer has
 * <|start_header_id|>, else ChatML in the flavour tokenizer_config.json's template names). */
int cl_ft_model_set_format(cl_ft_model *fm, const char *name, cl_err *e);

/* Adds adapters (cl_lora_add) and remembers their configuration for saving. */
int cl_ft_model_add_lora(cl_ft_model *fm, const cl_lora_config *c, cl_err *e);

/* Writes a complete model directory: config.json, model.safetensors (fp32, or the stored dtype),
 * tokenizer.json and the source's other tokenizer/generation files. */
int cl_ft_model_save(cl_ft_model *fm, const char *dir, cl_err *e);

/* Writes the adapters as a PEFT directory (base_model_name_or_path = the source). */
int cl_ft_model_save_adapter(cl_ft_model *fm, const char *dir, cl_err *e);

/* Reads a PEFT adapter into a model without adapters (its rank, alpha, dropout and targets);
 * every matrix's shape must fit the model. */
int cl_ft_model_load_adapter(cl_ft_model *fm, const char *dir, cl_err *e);

/* GGUF for llama.cpp: the model (its current weights, matrices as `as` says; merge first for a
 * merged export), and the adapters as a GGUF LoRA. */
int cl_ft_model_export_gguf(cl_ft_model *fm, cl_gguf_matrices as, const char *path, cl_err *e);
int cl_ft_model_export_gguf_lora(cl_ft_model *fm, const char *path, cl_err *e);

/* Greedy continuation of ids[0..n) by up to max_new tokens (within max_position_embeddings),
 * stopping after an eos id; the new ids are appended to out.  Runs the KV-cache engine. */
int cl_ft_generate_greedy(cl_ft_model *fm, const int *ids, int n, int max_new, cl_ids *out, cl_err *e);

/* Writes a file through path.tmp, fsync and rename. */
int cl_ft_write_file(const char *path, const void *data, size_t len, cl_err *e);
/* The same for a file made of n pieces written one after the other (never copied together). */
int cl_ft_write_parts(const char *path, const void *const *parts, const size_t *lens, int n, cl_err *e);

/* out = dir "/" name (or name alone when dir is NULL), truncated to size - 1 bytes; paths that
 * long are refused when opened, so truncation needs no separate report. */
char *cl_ft_path(char *out, size_t size, const char *dir, const char *name);

#endif
