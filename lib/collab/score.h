/* score.h — cl-reward's work on records: local metrics, R* and MR at every level.
 *
 * Owns: finding the scorable units of a record (each future of each candidate of a branch
 * record, or the record itself as a whole conversation), the references the seed carries
 * (`completion`/`single_turn_completion`, `metadata`/`single_turn_metadata`, `task`), the
 * artefacts cl-judge extracted (`extracted.document`, `extracted.code`, `extracted.answer` at
 * the unit), running the metrics in parallel (a core/pool.h pool of sleeping threads for BLEU,
 * one sandbox per thread for pass_rate), and writing `scores`, `metric_info`, `R` and `mr` back in place.  It does not
 * read or write streams: the tool hands it batches and keeps the order. */
#ifndef CL_SCORE_H
#define CL_SCORE_H

#include <jv.h>
#include <stdint.h>

#include "core/json.h"
#include "core/pool.h"
#include "metrics/tokens.h"
#include "core/records.h"
#include "collab/reward.h"
#include "metrics/bleu.h"
#include "metrics/cmd.h"
#include "sandbox/sandbox.h"

enum score_metric {
    SCORE_BLEU = 1 << 0,      /* "bleu": NLTK character BLEU of extracted.document */
    SCORE_BLEU_WORD = 1 << 1, /* "bleu_word": sacreBLEU-style word BLEU */
    SCORE_PASS_RATE = 1 << 2, /* "pass_rate": extracted.code against the seed's unittest */
    SCORE_MATH = 1 << 3,      /* "math_equiv": MATH answer equivalence */
    SCORE_TOKENS = 1 << 4,    /* "tokens": token count of the scope */
    SCORE_RM = 1 << 5         /* "rm_score": a reward model's score of the whole conversation */
};

typedef enum token_scope { SCOPE_FORWARD, SCOPE_SESSION } token_scope;
typedef enum token_roles { ROLES_ALL, ROLES_ASSISTANT, ROLES_USER } token_roles;

/* How the math metric finds a boxed answer (metrics/boxed): the MATH benchmark's own
 * extraction, quirks included (default), or ours, which also reads \fbox, "\boxed 5" and
 * trims spaces. */
typedef enum math_extract { MATH_EXTRACT_REFERENCE, MATH_EXTRACT_LENIENT } math_extract;

typedef struct score_cfg {
    unsigned metrics;          /* SCORE_* bits */
    math_extract math;
    tokens_method tokens;
    const cl_tokenizer *tk;    /* tiktoken:/tokenizer: methods: the loaded tokenizer */
    token_scope scope;
    token_roles roles;
    reward_cfg reward;         /* mode REWARD_NONE: no R, no mr */
    sandbox *sb;               /* needed for SCORE_PASS_RATE */
    metric_cmd *cmd;           /* --metric cmd:PROGRAM, started; NULL: none */
    metric_cmd *rm_cmd;        /* SCORE_RM: the reward-model program (cl-judge --rm-units),
                                * started; it speaks the cmd: protocol */
    int jobs;                  /* parallel workers */
    struct score_live *live;   /* NULL, or live counts for the progress line (score_records) */
    cl_pool *pool;             /* their threads (score_records makes it; NULL: the caller's only) */
} score_cfg;

/* Sandbox runs finished so far and how many passed, counted by the job threads as they go;
 * the calling thread (worker 0) calls cl_io_tick(io) between runs, so a batch of slow tests still shows progress. */
typedef struct score_live {
    uint64_t runs, passed;
    cl_io *io;
} score_live;

/* "bleu,bleu-word,pass_rate,math,tokens,rm_score" (any subset) → bits.  -1 with e set. */
int score_parse_metrics(const char *list, unsigned *bits, cl_err *e);
/* One --metric argument: a list as above, whose last item may be "cmd:PROGRAM" (the rest of
 * the argument, commas included, is the program) → *program (pointing into arg; at most one
 * per run: -1 with e set for a second). */
int score_parse_metric_arg(const char *arg, unsigned *bits, const char **program, cl_err *e);
int score_parse_scope(const char *s, token_scope *out, cl_err *e);
int score_parse_roles(const char *s, token_roles *out, cl_err *e);
const char *score_scope_name(token_scope s);
const char *score_roles_name(token_roles r);
/* "reference" | "lenient". */
int score_parse_math_extract(const char *s, math_extract *out, cl_err *e);
const char *score_math_extract_name(math_extract m);

typedef struct score_stats {
    uint64_t units;                 /* futures or conversations scored */
    uint64_t sandbox[4];            /* runs by sandbox_status */
    double sandbox_wall;            /* seconds, summed */
    /* Corpus BLEU: the counts of every unit written with a bleu ([0]) or bleu_word ([1])
     * score, and how many units that is. */
    bleu_counts corpus[2];
    uint64_t corpus_units[2];
} score_stats;

/* Scores recs[0..n) in place (each consumed and replaced).  On entry errs[i] is NULL, or a
 * malloc'd message for a record already found malformed, which is then left alone.  A record
 * that cannot be scored keeps its original value and gets errs[i] (malloc'd message).
 * defs (or NULL) holds each record's deferred strings (json.h): only the BLEU texts may be
 * deferred, and the completion only when neither math nor pass_rate is asked for.  st[i]
 * gets record i's counts (zeroed by the caller), so that a run that stops at a failed record
 * counts only the records written or reported before it.
 * Returns -1 with e set only for failures of the machinery itself (out of memory). */
int score_batch(const score_cfg *c, jv *recs, const cl_json_deferred *defs, char **errs, int n,
                score_stats *st, cl_err *e);

/* Scores every record of io: batches of `batch` records (0: 32 when only bleu and bleu-word
 * are asked for, 256 otherwise) are parsed, scored (score_batch) and
 * printed across sc->jobs threads, then written in input order; a record that cannot be scored
 * is reported with cl_io_fail.  Adds "scored" (and "sandbox" with pass_rate, "corpus_bleu"
 * with bleu or bleu-word) to --stats, and the corpus BLEU to the closing summary.
 * 0, or -1 with e set on a fatal error. */
int score_records(cl_io *io, const score_cfg *sc, int batch_size, cl_err *e);

#endif
