/* data.h — fine-tuning data: rows -> chat-rendered token sequences -> micro-batches.
 *
 * Owns: reading SFT dialogues ({"messages"}, or {"prompt","completion"} as the published flat
 * collabllm rows carry them) and preference pairs ({"prompt","chosen","rejected"}, TRL's
 * conversational form as cl-pairs writes it, or plain strings as in the published DPO rows);
 * rendering them with the model's chat format so that the loss falls only on the assistant's
 * completion (its content and end-of-turn token); max length with left truncation of the
 * prompt (TRL's keep_end), counting rows left without a single loss token; length-bucketed
 * micro-batches whose order is a deterministic function of (seed, epoch); optional packing of
 * a micro-batch's sequences into shared rows; and the flat arrays the model's forward takes.
 * Must not know: the model's layers, losses, optimiser or files other than the data's own. */
#ifndef CL_TRAIN_DATA_H
#define CL_TRAIN_DATA_H

#include <jv.h>
#include <stdint.h>

#include "core/err.h"
#include "model/chat.h"
#include "model/tokenizer.h"

typedef enum cl_ft_kind { CL_FT_SFT = 0, CL_FT_PAIRS = 1, CL_FT_GRPO = 2 } cl_ft_kind;

/* One token sequence.  Token i is a training target (predicted from token i-1) when
 * mask[i] is 1; mask[0] never counts. */
typedef struct cl_ft_seq {
    int *ids;
    uint8_t *mask;
    int len;
    int loss_tokens;
} cl_ft_seq;

/* SFT: one sequence.  Pairs: seq[0] chosen, seq[1] rejected (same prompt). */
typedef struct cl_ft_example {
    cl_ft_seq seq[2];
    int nseq;
    int len;             /* longest of its sequences */
} cl_ft_example;

typedef struct cl_ft_data {
    cl_ft_kind kind;
    cl_ft_example *ex;
    int n;
    size_t cap;
    long rows;           /* rows read */
    long truncated;      /* rows whose prompt (or completion) was cut to fit max_len */
    long no_loss;        /* rows dropped: no assistant token left after truncation */
    long pairs_as_sft;   /* SFT rows that were DPO pairs: prompt and chosen trained */
    uint64_t hash;       /* of every id and mask bit, in order (ties caches to the data) */
} cl_ft_data;

typedef struct cl_ft_data_opts {
    cl_ft_kind kind;
    cl_chat_format format;
    int max_len;         /* tokens per sequence (prompt + completion) */
    int max_prompt_len;  /* 0: only max_len applies */
} cl_ft_data_opts;

/* Reads every row of path (JSONL, zstd or plain).  A malformed row is an error naming
 * file:line and the field (CL_EXIT_DATAERR); rows without a loss token after truncation are
 * counted in no_loss and left out.  Appends to *d (zero-initialised by the caller). */
int cl_ft_data_load(cl_ft_data *d, const char *path, cl_tokenizer *tok, const cl_ft_data_opts *o,
                    cl_err *e);

/* Renders one parsed row (a jv, borrowed) into *ex; 1 = ok, 0 = no loss token left after
 * truncation (*ex empty), -1 = bad row (e names the field).  *truncated is set when cut. */
int cl_ft_render_row(const jv *row, cl_tokenizer *tok, const cl_ft_data_opts *o, cl_ft_example *ex,
                     int *truncated, cl_err *e);

void cl_ft_data_free(cl_ft_data *d);
void cl_ft_example_free(cl_ft_example *ex);

/* Moves the last `count` examples of *from (after a (seed)-determined shuffle) into *to: the
 * held-out split.  count < from->n. */
void cl_ft_data_split(cl_ft_data *from, cl_ft_data *to, int count, uint64_t seed);

/* ---- micro-batches ----------------------------------------------------------------------- */

/* Micro-batches of up to `size` examples, formed once by sorting examples by length (so each
 * batch pads little); plan->order is their order for one epoch, a permutation drawn from
 * (seed, epoch) by cl_ft_plan_epoch. */
typedef struct cl_ft_plan {
    int nbatches;
    int *start, *count;   /* batch i = sorted[start[i] .. start[i] + count[i]) */
    int *sorted;          /* example indices by length */
    int *order;           /* batch order of the current epoch */
    long epoch;           /* epoch `order` belongs to (-1: none yet) */
} cl_ft_plan;

int cl_ft_plan_new(cl_ft_plan *p, const cl_ft_data *d, int size, cl_err *e);
void cl_ft_plan_epoch(cl_ft_plan *p, long epoch, uint64_t seed);
void cl_ft_plan_free(cl_ft_plan *p);

/* A micro-batch as the model takes it: b rows of t tokens, per-token position and segment,
 * target (next token id on loss tokens, -1 elsewhere) and the sequence each loss token belongs
 * to (SFT: example k; pairs: 2k chosen, 2k+1 rejected of the batch's k-th pair). */
typedef struct cl_ft_batch {
    int b, t, nseq, nex;
    int *ids, *pos, *seg, *target, *seqid;
    int loss_tokens;
    int cap;
} cl_ft_batch;

/* Lays out examples idx[0..n).  packing = 0: one sequence per row, right-padded with pad_id;
 * packing = 1: sequences first-fit into rows of max_len tokens (positions restart and
 * attention stays inside each sequence). */
int cl_ft_batch_build(cl_ft_batch *bt, const cl_ft_data *d, const int *idx, int n, int packing, int max_len,
                      int pad_id, cl_err *e);
void cl_ft_batch_free(cl_ft_batch *bt);

/* Loss tokens of examples idx[0..n) (all sequences); of the chosen sequences only when
 * chosen_only. */
long cl_ft_loss_tokens(const cl_ft_data *d, const int *idx, int n, int chosen_only);

/* splitmix64-based uniform integer in [0, n) from (seed, stream, i): the one source of every
 * shuffle, so orders survive a resume. */
uint64_t cl_ft_rand(uint64_t seed, uint64_t stream, uint64_t i, uint64_t n);

#endif
