/* device.h — where a cl_llama computes: the backend table an accelerator fills in.
 *
 * Owns: cl_device_ops (the training entry points a device implements over its own copy of the
 * model), cl_device (a named device a tool opens and a run attaches the model to), and the
 * model-level optimizer calls that dispatch to the device when one is attached and to optim.h
 * otherwise.  The host tensors stay the model's canonical store for files: checkpoints, exports
 * and resume read and write them, so a run calls cl_llama_sync before reading them and after
 * changing them.  Must not name any device API: lib/cuda/ fills the table, tools open it, and a
 * CPU build never references a CUDA symbol. */
#ifndef CL_MODEL_DEVICE_H
#define CL_MODEL_DEVICE_H

#include "model/llama.h"
#include "model/optim.h"

typedef struct cl_device_ops {
    const char *name;
    /* cl_llama_forward/head/backward/logits/zero_grad/release_acts with the same contracts;
     * forward gets ids already checked against the vocabulary. */
    int (*forward)(cl_llama *m, const int *ids, const int *pos, const int *seg, int b, int t, cl_err *e);
    void (*head)(cl_llama *m, const int *target, const float *coef, float *logp);
    void (*backward)(cl_llama *m);
    void (*logits)(cl_llama *m, float *out);
    void (*zero_grad)(cl_llama *m);
    void (*release_acts)(cl_llama *m);
    /* sum of squared gradients over every trainable value; scale them all by s */
    double (*grad_sumsq)(cl_llama *m);
    void (*scale_grads)(cl_llama *m, float s);
    /* one AdamW step over every trainable tensor (optim.h's semantics) */
    void (*adamw)(cl_llama *m, const cl_adamw *h, long step, double lr);
    /* copies weights, gradients and moments device -> host (to_host) or host -> device */
    void (*sync)(cl_llama *m, int to_host);
    /* frees the device copy; the model computes on the CPU afterwards */
    void (*detach)(cl_llama *m);
    /* Inference (the engine's batched decode): out [n][w rows] = x [n][w cols] . W^T (+ b) with
     * the device's resident copy of the model's tensor w (a base or adapter matrix; b NULL or
     * its bias); x and out are host arrays.  The engine calls it in place of its CPU product
     * when m->dev is set. */
    void (*linear_rows)(cl_llama *m, const cl_tensor *w, const cl_tensor *b, const float *x, float *out, int n);
} cl_device_ops;

typedef struct cl_device {
    char name[32];                   /* "cuda:0" */
    int ordinal;
    int recompute;                   /* keep only each layer's input; backward recomputes the rest */
    /* copies the model (weights, gradients, moments) to the device and sets m->dev */
    int (*attach)(const struct cl_device *d, cl_llama *m, cl_err *e);
} cl_device;

enum { CL_SYNC_TO_DEVICE = 0, CL_SYNC_TO_HOST = 1 };

/* Parses a --device name: "cpu" (returns 0), "cuda" or "cuda:N" (returns 1, *ordinal set to
 * 0 or N).  Anything else is -1 with e set (CL_EXIT_USAGE), in every build, so a misspelt
 * name is a usage error whether or not this build has CUDA. */
int cl_device_parse(const char *spec, int *ordinal, cl_err *e);

/* Opening a device by name from a layer that must not name a device API (the local: engine's
 * +device=cuda): a tool built with CUDA registers its opener (cl_cuda_open) at start;
 * cl_device_open then parses spec as cl_device_parse does and calls it.  Without a registered
 * opener a GPU name is CL_EXIT_UNAVAILABLE, saying the program was built without CUDA; "cpu"
 * returns 1 (nothing to open). */
void cl_device_register(int (*open)(cl_device *d, const char *spec, cl_err *e));
int cl_device_open(cl_device *d, const char *spec, cl_err *e);

/* Copies between the host tensors and the device copy; no-op on the CPU. */
void cl_llama_sync(cl_llama *m, int to_host);

/* cl_grad_norm / cl_clip_grad_norm / cl_adamw_step over the trainable tensors ts (the model's
 * whole trainable set, as cl_llama_trainable lists it), on the model's device. */
double cl_llama_grad_norm(cl_llama *m, cl_tensor *const *ts, int nt);
double cl_llama_clip_grad_norm(cl_llama *m, cl_tensor *const *ts, int nt, double max_norm);
void cl_llama_adamw_step(cl_llama *m, const cl_adamw *h, cl_tensor *const *ts, int nt, long step, double lr);

#endif
