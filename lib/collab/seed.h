/* seed.h — dataset rows into seed records (design/pipeline.md §2).
 *
 * Owns: the preset table (which fields each published dataset row must hold and how a row
 * becomes {id, task, task_desc, prompt, completion, metadata, split}), ids (the dataset's own,
 * else a hash of prompt and completion), the train/test rule (a hash of the id, so a row lands
 * in the same split in every run and every shard), split names, the normalised-prompt key for
 * de-duplication, --split-ids files, the Medium length estimate and timestamps, and the
 * in-memory set that the recency cut and --shuffle need.
 * It knows nothing of flags or output streams: the tool feeds it rows and writes what it gives. */
#ifndef CL_SEED_H
#define CL_SEED_H

#include <jv.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/tokenizer.h"

typedef struct cl_seed_opts {
    const char *task, *task_desc; /* overrides for every row, or NULL */
    int history;                  /* abgcoqa: put the earlier Q/A turns into the prompt */
    const cl_tokenizer *tk;       /* medium: num_tokens counted with it (cl100k_base, the
                                   * paper's count); NULL: cl_seed_estimate_tokens */
} cl_seed_opts;

typedef struct cl_seed_preset {
    const char *name;        /* --preset NAME */
    const char *task;        /* the seed's task ("math", "code", "document", "qa") */
    const char *task_desc;   /* the paper's task description */
    const char *needs;       /* the row fields it requires, for help and messages */
    const char *id_fields[3];/* where the dataset keeps its own id, first present wins */
    double test_ratio;       /* default share of the test split when rows carry none */
    int dated;               /* rows carry timestamps: the recency cut and length filter apply */
    /* Fills *out with {prompt, completion, metadata} (generic may add task, task_desc), or
     * returns -1 with why naming the field. */
    int (*build)(const jv *row, const cl_seed_opts *o, jv *out, char *why, size_t n);
} cl_seed_preset;

/* The presets, in a fixed order; *n set to their number. */
const cl_seed_preset *cl_seed_presets(size_t *n);
const cl_seed_preset *cl_seed_preset_find(const char *name);

/* A row (borrowed) into a seed (*seed owned by the caller).  0, or -1 with why = "field 'x'
 * is missing" (or wrong type, empty, invalid) and *seed left invalid.  The seed has a "split"
 * only when the row named one. */
int cl_seed_from_row(const cl_seed_preset *p, const cl_seed_opts *o, const jv *row, jv *seed,
                     char *why, size_t n);

/* "train", "test" or "validation" for a split name a dataset may use (val, dev, eval…), or
 * NULL when s is none of them. */
const char *cl_seed_split_name(const char *s);

/* The split of an id when the dataset has none: "test" for a share test_ratio of ids, chosen by
 * a hash of the id and seed, "train" otherwise. */
const char *cl_seed_hash_split(const char *id, double test_ratio, uint64_t seed);

/* Key of a prompt for de-duplication: case-folded (ASCII), whitespace runs collapsed, ends
 * trimmed, then hashed. */
uint64_t cl_seed_prompt_key(const char *prompt);

/* Estimated cl100k_base tokens of text (no BPE tables here): each run of letters counts one
 * token per 8 letters, digits one per 3, other symbols one each, each non-ASCII character one.
 * Not checked against tiktoken (no tables here); rows that carry num_tokens use theirs. */
size_t cl_seed_estimate_tokens(const char *text);

/* Seconds since the epoch of a timestamp value: a number (seconds, or milliseconds when above
 * 1e11) or an ISO-8601 string "YYYY-MM-DD[ T]hh:mm[:ss[.f]][Z|±hh:mm]" or a bare date.
 * 0, or -1 when v is not a timestamp. */
int cl_seed_time(jv v, double *t);

/* An exact split published elsewhere: lines "ID SPLIT" (split after the last blank) or JSON
 * objects with "id" and "split" (cl-seed output works), plain or zstd.  *map becomes an object
 * id -> split.  -1 with e set (66 unreadable, 65 a bad line naming file:line). */
int cl_seed_split_ids_load(const char *path, jv *map, cl_err *e);

/* A set of 64-bit keys (prompt keys, id hashes). */
typedef struct cl_seed_seen {
    uint64_t *k;
    size_t n, cap;
    int has_zero;
} cl_seed_seen;
/* Adds key: 1 when new, 0 when already there, -1 out of memory. */
int cl_seed_seen_add(cl_seed_seen *s, uint64_t key);
void cl_seed_seen_free(cl_seed_seen *s);

/* Seeds held back for the recency cut or --shuffle. */
typedef struct cl_seed_item {
    jv seed;
    double time;
} cl_seed_item;
typedef struct cl_seed_set {
    cl_seed_item *v;
    size_t n, cap;
} cl_seed_set;
int cl_seed_set_add(cl_seed_set *s, jv seed, double time);
/* Keeps the share frac of most recent seeds (by time, then id), in time order; returns how
 * many were dropped. */
size_t cl_seed_set_keep_recent(cl_seed_set *s, double frac);
/* Fisher-Yates with a generator seeded by seed: the same seed gives the same order. */
void cl_seed_set_shuffle(cl_seed_set *s, uint64_t seed);
void cl_seed_set_free(cl_seed_set *s);

#endif
