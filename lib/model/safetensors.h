/* safetensors.h — Hugging Face safetensors files: validated mmap reader, writer, shards.
 *
 * Owns: the file layout (u64 header size, JSON header, data buffer), its validation (header
 * size, dtypes, shapes against byte sizes, offsets covering the buffer exactly, no gaps or
 * overlaps), the writer's conventions (space-padded header to 8 bytes, __metadata__
 * {"format":"pt"}, contiguous offsets, tensors ordered by dtype size then name, atomic
 * rename), sharded checkpoints with model.safetensors.index.json, and F32/F16/BF16
 * conversions.  Tensors are described plainly (name, dtype, shape, bytes): this module knows
 * no model.  Must not know: model structs, PEFT or GGUF naming. */
#ifndef CL_MODEL_SAFETENSORS_H
#define CL_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef enum cl_st_dtype {
    CL_ST_F32, CL_ST_F16, CL_ST_BF16, CL_ST_F64, CL_ST_I64, CL_ST_I32, CL_ST_I16, CL_ST_I8,
    CL_ST_U8, CL_ST_BOOL, CL_ST_F8_E4M3, CL_ST_F8_E5M2, CL_ST_NDTYPES
} cl_st_dtype;

#define CL_ST_MAX_DIMS 8

/* A tensor to write, or one read (then name and data point into the open file). */
typedef struct cl_st_tensor {
    const char *name;
    cl_st_dtype dtype;
    int ndim;
    int64_t shape[CL_ST_MAX_DIMS];
    const void *data;   /* row-major little-endian bytes; may be unaligned in files read */
    size_t nbytes;      /* filled by the reader; the writer computes it */
} cl_st_tensor;

size_t cl_st_dtype_size(cl_st_dtype d);
const char *cl_st_dtype_name(cl_st_dtype d);         /* "F32", "BF16", ... */
int cl_st_dtype_parse(const char *name);              /* -1 if unknown */
/* Element count of a shape; -1 on overflow past 2^62. */
int64_t cl_st_numel(int ndim, const int64_t *shape);

/* Converts n elements of F32/F16/BF16 (unaligned source fine) to float; -1 for other dtypes. */
int cl_st_to_f32(cl_st_dtype d, const void *src, float *dst, size_t n);
/* float -> F32/F16/BF16 with round-to-nearest-even; -1 for other dtypes. */
int cl_st_from_f32(cl_st_dtype d, const float *src, void *dst, size_t n);

/* ---- one file ------------------------------------------------------------------------ */

typedef struct cl_safetensors cl_safetensors;

/* Maps and validates a file.  Any violation is CL_EXIT_DATAERR with "path: tensor: what". */
cl_safetensors *cl_st_open(const char *path, cl_err *e);
/* The same over a buffer the caller keeps alive (for fuzzing and embedded files). */
cl_safetensors *cl_st_open_buffer(const void *buf, size_t len, const char *name, cl_err *e);
void cl_st_close(cl_safetensors *f);
size_t cl_st_count(const cl_safetensors *f);
const cl_st_tensor *cl_st_at(const cl_safetensors *f, size_t i);   /* in offset order */
const cl_st_tensor *cl_st_find(const cl_safetensors *f, const char *name);
const char *cl_st_metadata(const cl_safetensors *f, const char *key); /* NULL if absent */

/* Writes tensors to path (through path.tmp and rename).  Names must be unique. */
int cl_st_write(const char *path, const cl_st_tensor *t, size_t n, cl_err *e);

/* ---- checkpoints (one file or shards with an index) ---------------------------------- */

typedef struct cl_st_model cl_st_model;

/* Writes dir/model.safetensors, or, when the tensors exceed max_shard_bytes (0: never),
 * dir/model-0000i-of-0000N.safetensors plus dir/model.safetensors.index.json. */
int cl_st_write_checkpoint(const char *dir, const cl_st_tensor *t, size_t n,
                           size_t max_shard_bytes, cl_err *e);
/* Opens dir/model.safetensors.index.json and its shards (each tensor listed exactly once and
 * present where the index says), or dir/model.safetensors. */
cl_st_model *cl_st_model_open(const char *dir, cl_err *e);
void cl_st_model_close(cl_st_model *m);
/* Lets the caller write into the mapped tensor bytes: a page written becomes a private copy
 * (the files never change; pages not written stay shared with the page cache).  -1 with e set
 * when the kernel refuses. */
int cl_st_model_private(cl_st_model *m, cl_err *e);
/* Says a tensor read from a mapped file is done with: the whole pages of its bytes leave the
 * process's memory (a later read faults them in again from the file).  For a caller that
 * converted it elsewhere but keeps the file mapped for other tensors.  Pages written since
 * cl_st_model_private lose those writes, so call it only on tensors never written. */
void cl_st_release(const cl_st_tensor *t);
size_t cl_st_model_count(const cl_st_model *m);
const cl_st_tensor *cl_st_model_at(const cl_st_model *m, size_t i);
const cl_st_tensor *cl_st_model_find(const cl_st_model *m, const char *name);

#endif
