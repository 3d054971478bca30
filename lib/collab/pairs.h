/* pairs.h — what the data engine makes of MR-scored turns: the ranking of a turn's candidate
 * replies, DPO preference pairs, SFT dialogues, the step from one turn's branches to the next
 * turn's states, and the flat rows of the published collabllm-multiturn-* datasets.
 *
 * Owns the record shapes it reads and writes (man 5 cl-records):
 *   branch  a state {id, messages, turn, done, ...} plus candidates[] {id, content, source,
 *           futures[] {messages, terminated, scores, R}, mr {mean, std, n}}
 *   state   a branch without candidates, with "picks" (one entry per advanced turn)
 *   pair    {id, conv_id, turn, prompt, chosen, rejected, score_chosen, score_rejected, ...}
 *   sft     {id, messages}
 *   row     {prompt, completion, conv_id, turn_id, score, sessions, rewards, single_turn_*}
 * Must not know: how scores, R or MR were computed, models, files or streams.  Records come in
 * and go out as jv values; the tool does the I/O.
 *
 * Ownership follows json.h: `const jv *` borrows, `jv` by value consumes, returned jv are the
 * caller's. */
#ifndef CL_PAIRS_H
#define CL_PAIRS_H

#include <jv.h>

#include "core/err.h"

/* ---- ranking ------------------------------------------------------------------------- */

/* The candidates of one turn ordered by MR: highest mean first, then smaller std (the paper's
 * tie-break: of equal means the steadier reply is chosen), then input order.  best is the first
 * of that order and worst the last, so they differ whenever there are two candidates or more.
 * Every candidate needs mr.mean (a number); mr.std missing counts as 0.  Returns 0, or -1 with
 * e naming the candidate and field. */
typedef struct cl_mr_rank {
    int best, worst;
    double best_mean, worst_mean;
} cl_mr_rank;
int mr_rank(const jv *candidates, cl_mr_rank *r, cl_err *e);

/* ---- groups of candidates per (conversation, turn) ---------------------------------- */

/* Candidates of one turn may arrive in several records (shards, several candidate sources);
 * they are merged by (id, turn) in order of first appearance, as the official converter groups
 * rows by (conv_id, turn_id). */
typedef struct cl_turns cl_turns;
cl_turns *cl_turns_new(void);
void cl_turns_free(cl_turns *t);
/* Adds a branch record (borrowed).  Fails (CL_EXIT_DATAERR) when a field is missing or of the
 * wrong kind (id, messages, turn, each candidate's content and mr.mean), or when a record with
 * the same id and turn has other messages, so that what was added always ranks. */
int cl_turns_add(cl_turns *t, const jv *branch, cl_err *e);
int cl_turns_count(const cl_turns *t);
/* The i-th merged branch record (owned). */
jv cl_turns_get(const cl_turns *t, int i);

/* ---- DPO ----------------------------------------------------------------------------- */

typedef struct cl_pair_config {
    double min_gap;            /* drop turns whose best - worst MR is below this */
    const char *system_prompt; /* prepended as a system message when non-NULL */
    const char *prompt_set;    /* the set it came from, recorded as "prompt_set" beside it */
} cl_pair_config;

/* The preference pair of a merged branch record (borrowed): 1 with *pair set, 0 when the turn
 * gives none (fewer than two candidates, or a gap below min_gap), -1 with e on bad input. */
int dpo_pair(const jv *branch, const cl_pair_config *cfg, jv *pair, cl_err *e);

/* ---- SFT ----------------------------------------------------------------------------- */

/* A metric floor such as "accuracy>=0.5" (operators >=, >, <=, <). */
typedef struct cl_floor {
    char metric[64];
    char op[3];
    double value;
} cl_floor;
int cl_floor_parse(const char *s, cl_floor *f, cl_err *e);
int cl_floor_holds(const cl_floor *f, double x);

/* The chosen chain of each conversation.  A conversation is represented by its latest
 * dialogue: a finished state (its messages up to the last reply), or a branch record's
 * messages plus its best candidate; later turns win, equal turns go to the higher MR.
 * The metrics of a dialogue, which floors test, are the conversation's own "scores" (a
 * conversation judged as a whole) over the last pick's, or the means over the chosen
 * candidate's futures (the official converter's rewards.<metric> mean). */
typedef struct cl_dialogues cl_dialogues;
/* floors (copied) are checked for presence on every record added: a missing metric is an error
 * on that record, never a silent pass or drop. */
cl_dialogues *cl_dialogues_new(const cl_floor *floors, int nfloors);
void cl_dialogues_free(cl_dialogues *d);
/* 1 taken, 0 an unfinished state (done false: no dialogue yet), -1 bad input. */
int cl_dialogues_add(cl_dialogues *d, const jv *record, cl_err *e);
int cl_dialogues_count(const cl_dialogues *d);
/* The i-th conversation as an sft record {id, messages} (behind cfg's system prompt, if any,
 * and then with "prompt_set"): 1 with *sft set, 0 when a floor fails. */
int sft_dialogue(const cl_dialogues *d, int i, const cl_pair_config *cfg, jv *sft);

/* ---- advance ------------------------------------------------------------------------- */

typedef enum {
    CL_NEXT_LONGEST,    /* v2: the chosen candidate's future with the most messages */
    CL_NEXT_WORST_OPEN, /* paper era: the lowest-R future whose first user message does not
                         * end the chat; future 0 when all do */
} cl_next_user_rule;

typedef struct cl_advance_config {
    cl_next_user_rule rule;
    long max_turns;     /* assistant replies after which a conversation is done */
    const char *marker; /* termination marker in a user message */
} cl_advance_config;

/* The state for the next turn from a scored branch record (consumed): the best candidate is
 * appended, then the next user message from its futures.  At the turn cap no user message is
 * added and the state is done ("max_turns"); a user message that ends the chat is kept, as
 * cl-rollout keeps it, and the state is done ("terminated"); a best candidate without futures
 * leaves it done ("no_next_user").
 * "candidates" is removed; "picks" gains {turn, candidate, source, mr, scores, future}.  Done
 * states are returned unchanged.  0 with *state set, -1 with e. */
int advance_turn(jv branch, const cl_advance_config *cfg, jv *state, cl_err *e);

/* ---- flat rows of the published datasets -------------------------------------------- */

/* One row per candidate of a branch record (borrowed): an array of rows.  Fields the official
 * schema has no place for travel in "state" (state fields) and "candidate" (candidate fields,
 * with candidate.futures[] holding each future's other fields), so reading the rows back gives
 * the same records. */
int flat_rows(const jv *branch, jv *rows, cl_err *e);

/* A branch record with one candidate from a row (consumed): cl_turns_add merges the rows of one
 * (conv_id, turn_id).  Numeric conv_ids become string ids and are kept in "conv_id". */
int flat_row_branch(jv row, jv *branch, cl_err *e);

#endif
