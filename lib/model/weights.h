/* weights.h — moving a cl_llama's tensors to and from the ecosystem's files.
 *
 * Owns: the joins between the model's parameter table (llama.h: HF names, shapes, data) and
 * the file modules: a safetensors checkpoint (single or sharded) into the base weights, a
 * PEFT adapter directory into LoRA adapters, both back out, and GGUF exports of either.
 * Every tensor is matched by name and shape; dtypes are converted (F32/F16/BF16 files;
 * F32/BF16 model storage).
 * Must not know: file layouts (safetensors.h, peft.h) or model maths (llama.h). */
#ifndef CL_MODEL_WEIGHTS_H
#define CL_MODEL_WEIGHTS_H

#include "core/err.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/lora.h"
#include "model/tokenizer.h"

/* Fills every base tensor of m from DIR's checkpoint.  A tensor the model needs that the files
 * lack, or one of another shape, is CL_EXIT_DATAERR naming it; file tensors the model does not
 * use are ignored (rotary caches and the like).  When the base is frozen (no train_base), a
 * tensor the file stores in the model's dtype is used in place from the file mapping (kept
 * until cl_llama_free; writing it copies the page, never the file); others are converted into
 * the model's arena. */
int cl_weights_load(cl_llama *m, const char *dir, cl_err *e);

/* Adds the adapters of a PEFT directory to m (rank, alpha, rsLoRA and targets from its
 * adapter_config.json) and fills A and B.  The model must not have adapters yet.  used (may be
 * NULL) receives the configuration the adapters were added with. */
int cl_weights_load_adapter(cl_llama *m, const char *dir, cl_lora_config *used, cl_err *e);

/* Writes m's base tensors as DIR/model.safetensors (sharded past max_shard_bytes, 0: never). */
int cl_weights_save(cl_llama *m, const char *dir, size_t max_shard_bytes, cl_err *e);

/* Writes m's adapters as a PEFT directory (DIR must exist); base_model names the base.  Rank
 * and targets are the model's; alpha, dropout, rsLoRA and the init come from c. */
int cl_weights_save_adapter(cl_llama *m, const char *dir, const char *base_model, const cl_lora_config *c,
                            cl_err *e);

/* The GGUF export description of a model of config c: architecture, sizes, norms, RoPE base,
 * BOS/EOS ids, and for Llama-3.1 rope scaling the frequency divisors, which llama.cpp reads
 * from rope_freqs.weight (rope_freqs must hold head_dim/2 floats and outlive *info). */
void cl_weights_gguf_info(const cl_llama_config *c, cl_gguf_model_info *info, float *rope_freqs);

/* GGUF for llama.cpp: m's current weights (merge first for a merged export) described by
 * cl_weights_gguf_info, with tok's vocabulary and chat_template (NULL: none), matrices as `as`
 * says; and m's adapters as a GGUF LoRA (alpha and rsLoRA from c). */
int cl_weights_export_gguf(cl_llama *m, const cl_tokenizer *tok, const char *chat_template, cl_gguf_matrices as,
                           const char *path, cl_err *e);
int cl_weights_export_gguf_lora(cl_llama *m, const cl_lora_config *c, const char *path, cl_err *e);

#endif
