/* gguf.h — GGUF v3 files for llama.cpp: a generic writer and reader, and the exports of a
 * Llama/Qwen2 model (with its tokenizer) and of a LoRA adapter.
 *
 * Owns: the container (magic, version 3, typed key/values, tensor infos with dimensions in
 * ggml order — the reverse of the PyTorch shape — and offsets relative to the data section,
 * 32-byte alignment), the mapping from Hugging Face tensor names to llama.cpp's, the q/k row
 * permutation the `llama` architecture needs (its RoPE rotates adjacent pairs; HF checkpoints
 * rotate half-split pairs; `qwen2` needs none), the tokenizer metadata (tokens, types, merges,
 * specials, chat template) and the adapter keys (general.type=adapter, adapter.lora.alpha).
 * Must not know: model structs (tensors come as plain cl_st_tensor descriptions). */
#ifndef CL_MODEL_GGUF_H
#define CL_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/peft.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

enum cl_gguf_type {
    CL_GGUF_U8, CL_GGUF_I8, CL_GGUF_U16, CL_GGUF_I16, CL_GGUF_U32, CL_GGUF_I32, CL_GGUF_F32,
    CL_GGUF_BOOL, CL_GGUF_STRING, CL_GGUF_ARRAY, CL_GGUF_U64, CL_GGUF_I64, CL_GGUF_F64
};

/* ggml tensor types this module reads and writes. */
enum { CL_GGML_F32 = 0, CL_GGML_F16 = 1, CL_GGML_BF16 = 30 };

#define CL_GGUF_ALIGNMENT 32

/* ---- writer -------------------------------------------------------------------------- */

typedef struct cl_gguf_writer cl_gguf_writer;

cl_gguf_writer *cl_gguf_writer_new(void);
void cl_gguf_writer_free(cl_gguf_writer *w);
/* Key/values in the order added.  Each returns 0, or -1 when out of memory. */
int cl_gguf_kv_str(cl_gguf_writer *w, const char *key, const char *val);
int cl_gguf_kv_u32(cl_gguf_writer *w, const char *key, uint32_t val);
int cl_gguf_kv_i32(cl_gguf_writer *w, const char *key, int32_t val);
int cl_gguf_kv_f32(cl_gguf_writer *w, const char *key, float val);
int cl_gguf_kv_bool(cl_gguf_writer *w, const char *key, int val);
int cl_gguf_kv_strs(cl_gguf_writer *w, const char *key, const char *const *v, size_t n);
int cl_gguf_kv_i32s(cl_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* A tensor with its PyTorch shape (written reversed) and F32/F16/BF16 data.  The data is
 * copied.  -1 with e set on a bad dtype/shape. */
int cl_gguf_add_tensor(cl_gguf_writer *w, const char *name, cl_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, cl_err *e);
/* Writes the file (through path.tmp and rename). */
int cl_gguf_write(cl_gguf_writer *w, const char *path, cl_err *e);

/* ---- reader -------------------------------------------------------------------------- */

typedef struct cl_gguf cl_gguf;

typedef struct cl_gguf_tensor {
    const char *name;
    uint32_t type;          /* CL_GGML_* */
    int ndim;
    int64_t ne[4];          /* ggml order: ne[0] varies fastest */
    const void *data;
    size_t nbytes;
} cl_gguf_tensor;

/* Validates and indexes a GGUF v2/v3 buffer the caller keeps alive: every string, array and
 * tensor inside the buffer, offsets aligned, tensor data not overlapping. */
cl_gguf *cl_gguf_open_buffer(const void *buf, size_t len, const char *name, cl_err *e);
/* The same over a file (mapped). */
cl_gguf *cl_gguf_open(const char *path, cl_err *e);
void cl_gguf_close(cl_gguf *g);
uint32_t cl_gguf_version(const cl_gguf *g);
/* The value of key: its type and a pointer to its bytes in the file (NULL if absent), which
 * may be unaligned (memcpy it out).  For arrays, *elem_type and *count are set and the pointer
 * is at the first element. */
const void *cl_gguf_get(const cl_gguf *g, const char *key, uint32_t *type, uint32_t *elem_type,
                        uint64_t *count);
/* Convenience: a string value as a malloc'd C string (NULL if absent or not a string). */
char *cl_gguf_get_str(const cl_gguf *g, const char *key);
size_t cl_gguf_tensor_count(const cl_gguf *g);
const cl_gguf_tensor *cl_gguf_tensor_at(const cl_gguf *g, size_t i);
const cl_gguf_tensor *cl_gguf_find(const cl_gguf *g, const char *name);

/* ---- exports ------------------------------------------------------------------------- */

/* The type of an export's matrices: each as the model holds it, or all converted to one (the
 * F16 and BF16 exports halve the bytes llama.cpp reads per token). */
typedef enum { CL_GGUF_AS_STORED, CL_GGUF_AS_F32, CL_GGUF_AS_F16, CL_GGUF_AS_BF16 } cl_gguf_matrices;

/* "f32", "f16" or "bf16"; -1 for anything else. */
int cl_gguf_matrices_parse(const char *s);

typedef struct cl_gguf_model_info {
    const char *arch;               /* "llama" (q/k permuted) or "qwen2" */
    const char *name;               /* general.name; NULL: none */
    uint32_t context_length, embedding_length, block_count, feed_forward_length;
    uint32_t head_count, head_count_kv, head_dim; /* head_dim 0: embedding/heads */
    float rms_eps, rope_theta;
    const char *chat_template;      /* NULL: none */
    int32_t bos_id, eos_id, pad_id; /* -1: not written */
    const float *rope_freqs;        /* head_dim/2 divisors of the RoPE frequencies (Llama-3.1
                                     * "llama3" rope scaling), written as rope_freqs.weight;
                                     * NULL: none */
    cl_gguf_matrices matrices;      /* the matrices' type (1-D tensors are always F32) */
} cl_gguf_model_info;

/* Exports a model given its Hugging Face tensors (model.embed_tokens.weight, ...).  The
 * vocabulary is the tokenizer's, padded to the embedding's rows with unused tokens.  1-D
 * tensors are written as F32, matrices as m->matrices says. */
int cl_gguf_export_model(const char *path, const cl_gguf_model_info *m, const cl_st_tensor *hf,
                         size_t n, const cl_tokenizer *tok, cl_err *e);

/* Exports a LoRA adapter (PEFT layout) for `arch`; q/k lora_B rows are permuted for llama. */
int cl_gguf_export_lora(const char *path, const char *arch, const cl_peft_config *c,
                        uint32_t head_count, uint32_t head_count_kv, const cl_peft_lora *l,
                        size_t n, cl_err *e);

/* The llama.cpp name of a Hugging Face tensor ("blk.3.attn_q.weight"); -1 if unknown. */
int cl_gguf_tensor_name(const char *hf, char *buf, size_t size);

/* The llama.cpp pre-tokenizer label for a split regex ("llama-bpe", "qwen2", "gpt-2",
 * "default" when unknown). */
const char *cl_gguf_pre_label(const char *pattern);

#endif
