/* peft.h — PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors).
 *
 * Owns: the adapter_config.json keys PEFT and vLLM read (only standard keys are written), the
 * tensor names base_model.model.model.layers.N.{self_attn,mlp}.M.lora_{A,B}.weight, the shape
 * rule (lora_A is r x in, lora_B is out x r) and the scale (alpha/r, or alpha/sqrt(r) with
 * rsLoRA).  Reading validates all of it and refuses what we cannot apply (DoRA, biases,
 * fan_in_fan_out, per-module ranks, modules_to_save).
 * Must not know: model structs; adapters are described as plain (layer, module, A, B). */
#ifndef CL_MODEL_PEFT_H
#define CL_MODEL_PEFT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/safetensors.h"

#define CL_PEFT_MAX_TARGETS 16

typedef struct cl_peft_config {
    char base_model[512];   /* base_model_name_or_path ("" writes null) */
    int r;
    double alpha;
    double dropout;
    int use_rslora;
    int gaussian_init;      /* init_lora_weights "gaussian" (else true) */
    size_t n_targets;
    char targets[CL_PEFT_MAX_TARGETS][32]; /* "q_proj", "down_proj", ... */
} cl_peft_config;

/* One adapted projection.  A is r x in, B is out x r, row-major; dtype F32/F16/BF16. */
typedef struct cl_peft_lora {
    int layer;
    const char *module;     /* q_proj k_proj v_proj o_proj gate_proj up_proj down_proj */
    int64_t in, out;
    cl_st_dtype dtype;
    const void *A, *B;
} cl_peft_lora;

/* alpha/r, or alpha/sqrt(r) with rsLoRA. */
double cl_peft_scale(const cl_peft_config *c);

/* The PEFT tensor name of a LoRA matrix ('A' or 'B'); -1 for an unknown module. */
int cl_peft_tensor_name(char *buf, size_t size, int layer, const char *module, char which);

/* Parses adapter_config.json text (name for messages) into *c. */
int cl_peft_config_parse(const char *buf, size_t len, const char *name, cl_peft_config *c,
                         cl_err *e);

/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (dir must exist). */
int cl_peft_write(const char *dir, const cl_peft_config *c, const cl_peft_lora *l, size_t n,
                  cl_err *e);

typedef struct cl_peft cl_peft;

/* Opens an adapter dir: config parsed, every tensor named and shaped as PEFT writes it, every
 * A paired with its B and both of rank r. */
cl_peft *cl_peft_open(const char *dir, cl_err *e);
void cl_peft_close(cl_peft *p);
const cl_peft_config *cl_peft_config_of(const cl_peft *p);
size_t cl_peft_count(const cl_peft *p);
/* The i-th adapted projection (A/B point into the mapped file), ordered by layer then module. */
const cl_peft_lora *cl_peft_at(const cl_peft *p, size_t i);

#endif
