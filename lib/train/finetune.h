/* finetune.h — SFT, DPO and GRPO training runs: the loop, its checkpoints and its resume.
 *
 * Owns: one run from options to artefacts — model and data loading (modelio.h, data.h), the
 * per-micro-batch objectives (SFT cross-entropy normalised by the loss tokens of the whole
 * accumulated step; DPO on summed completion log-probs against reference log-probs computed
 * once up front with the adapters off and cached beside the run; the optional NLL term on
 * the chosen reply and the anchor SFT set; GRPO (train/grpo.h) with per-token reference
 * log-probs computed once and cached the same way), gradient accumulation, clipping, AdamW and the
 * warmup schedule, evaluation and best-checkpoint keeping, checkpoints written whole (a temp
 * directory renamed into place, then the `last` link swapped), the versioned resume file
 * (optimizer moments, step, dropout counter, metrics offset; magic, version and sizes
 * checked), SIGINT/SIGTERM during the loop (finish the step, checkpoint, stop; a second
 * signal aborts), progress on stderr and the metrics JSONL, and the final exports.
 * Must not know: command-line syntax (tools/cl-finetune.c builds cl_ft_opts). */
#ifndef CL_TRAIN_FINETUNE_H
#define CL_TRAIN_FINETUNE_H

#include <stdint.h>

#include "core/err.h"
#include "model/device.h"
#include "model/gguf.h"
#include "model/loss.h"
#include "model/lora.h"
#include "model/optim.h"
#include "core/stream.h"
#include "train/data.h"
#include "train/grpo.h"

typedef struct cl_ft_opts {
    cl_ft_kind kind;                 /* CL_FT_SFT, CL_FT_PAIRS (DPO) or CL_FT_GRPO */
    const char *model_dir;           /* --model */
    const char *init_config;         /* --init: a new model from this config.json */
    const char *tokenizer, *corpus;  /* --tokenizer FILE / --train-tokenizer CORPUS (with --init) */
    int corpus_vocab;                /* --vocab */
    const char *data, *eval_data, *anchor, *adapter, *run_dir, *chat;
    const char *optimizer_from;      /* a checkpoint whose AdamW moments and step this run continues
                                      * (the online rounds: one optimizer across runs) */
    int resume;                      /* continue run_dir from its last checkpoint */
    int full;                        /* full fine-tuning instead of LoRA */
    cl_lora_config lora;
    int bf16;                        /* keep the frozen base in bf16 (LoRA) */
    cl_adamw adamw;
    double lr, clip, warmup_ratio;
    long warmup_steps;               /* -1: from warmup_ratio */
    cl_sched sched;
    int epochs;
    long max_steps;                  /* > 0 overrides epochs */
    int batch, grad_accum, max_len, max_prompt_len, packing;
    cl_dpo_config dpo;
    cl_grpo_config grpo;
    double rpo_alpha, anchor_weight;
    double eval_split;
    long eval_every, save_every, log_every;
    double progress_every;           /* > 0: a step line also once this long since the last one
                                      * (--progress; slow steps still show life) */
    int keep;                        /* checkpoints kept besides the best */
    int merge, gguf;
    cl_gguf_matrices gguf_type;      /* --gguf-type: model.gguf's matrices (as stored by default) */
    uint64_t seed;
    const cl_device *device;         /* --device: NULL computes on the CPU */
    int quiet;
    cl_writer *metrics_out;          /* optional copy of the metrics records (-o) */
    const char *stats;               /* --stats FILE: rows, steps, tokens, seconds, last loss */
    const char *args_json;           /* written to RUN/args.json by a new run (the command line) */
} cl_ft_opts;

/* Defaults: LoRA r 8 alpha 16 on all projections, lr 1e-4 (2e-5 full), cosine, no warmup,
 * 1 epoch, batch 4, max_len 1024, DPO sigmoid beta 0.1, GRPO clip 0.2 (dual clip 3) and KL
 * coefficient 0.001 (verl's), save at the end only. */
void cl_ft_opts_default(cl_ft_opts *o);

/* The whole run; 0, or -1 with e set (the run directory keeps its last good checkpoint).
 * Interrupted by SIGINT or SIGTERM: -1 with e->code 128 + the signal, after a checkpoint of
 * the last finished step, and a message naming the --resume command. */
int cl_ft_run(const cl_ft_opts *o, cl_err *e);

/* ---- one micro-batch (also what the tests compare against PyTorch) ---------------------- */

/* Log-probs summed per sequence of the batch (no gradients); seq_logp[nseq], seq_len[nseq]. */
int cl_ft_seq_logps(cl_llama *m, const cl_ft_batch *bt, double *seq_logp, int *seq_len, cl_err *e);

/* Adds the gradient of weight * (-sum of loss-token log-probs / norm) and returns that term. */
int cl_ft_sft_micro(cl_llama *m, const cl_ft_batch *bt, double norm, double weight, double *loss, cl_err *e);

typedef struct cl_ft_dpo_out {
    double loss;                     /* this batch's share of the step's mean DPO loss */
    double nll;                      /* its share of the rpo NLL term (before rpo_alpha) */
    cl_dpo_metrics mt;               /* means over this batch's pairs */
    int pairs;
} cl_ft_dpo_out;

/* DPO on a batch of pairs (sequence 2k chosen, 2k+1 rejected) with reference log-probs
 * ref[nseq]: adds the gradient of the step objective's share, where the step has pair_norm
 * pairs and chosen_norm chosen loss tokens (for rpo_alpha > 0). */
int cl_ft_dpo_micro(cl_llama *m, const cl_ft_batch *bt, const cl_dpo_config *c, const double *ref,
                    double pair_norm, double rpo_alpha, double chosen_norm, cl_ft_dpo_out *out, cl_err *e);

#endif
