/* judge.h — LLM-as-judge: what each judge sees, what it is asked, and how its reply becomes a
 * score (paper §3.1.1, §4, App. D; research digest §1.4, §3.4).
 *
 * Owns: the judges (artefact extraction, interactivity on the unit or the paper scale,
 * accuracy, helpfulness, clarify-or-answer), the places in a record that get judged (a whole
 * conversation, or each future of each candidate), what part of the conversation a judge reads
 * (--context window or full), the request each judge sends, the reading of its reply (range
 * checks, the 2(S-2.5) rescale), the summary of N sampled judgements (mean and spread), and
 * where results go in the record: `scores.NAME` and `judge.NAME` at the judged level, and
 * `extracted.KIND` (document, code, answer: the contract with cl-reward) next to the
 * `messages` it was extracted from.
 * Must not know: HTTP, the event loop, caching or retries (the tool drives those through
 * llm.h); report statistics (report.h). */
#ifndef CL_JUDGE_H
#define CL_JUDGE_H

#include <jv.h>

#include "core/err.h"

typedef enum cl_judge_kind {
    CL_JUDGE_EXTRACT,        /* the final artefact (document, code, answer): a string */
    CL_JUDGE_INTERACTIVITY,  /* engagement and clarification: unit 0..1, or paper 1..3 */
    CL_JUDGE_ACCURACY,       /* final answer against the reference: 0 or 1 */
    CL_JUDGE_HELPFULNESS,    /* six levels 0, 0.2, ..., 1 */
    CL_JUDGE_CLARIFY,        /* Abg-CoQA: asked iff the question is ambiguous: 0 or 1 */
    CL_JUDGE_NKINDS
} cl_judge_kind;

/* Interactivity scales.  unit: the release code's 0 / 0.5 / 1 anchors, the score is the rating.
 * The paper-era code rates 1-3 (A = 3, B = 2, C = 1) and rescales it two ways [P App. D.4]:
 * paper-train, rating / 3 in [1/3, 1], the R_LLM of its training reward; paper-eval,
 * 2(rating - 2.5), the ITR of its evaluation table (Table 1).  None is comparable with another. */
typedef enum cl_itr_scale { CL_ITR_UNIT, CL_ITR_PAPER_TRAIN, CL_ITR_PAPER_EVAL } cl_itr_scale;

typedef struct cl_judge_config {
    unsigned kinds;          /* bit (1u << kind) for each judge to run */
    const char *artefact;    /* "document", "code" or "answer" (with CL_JUDGE_EXTRACT) */
    cl_itr_scale itr_scale;
    int context_full;        /* 1: judges read the whole conversation; 0: the forward window
                              * with the earlier history as context */
    const char *prompt_dir;  /* --prompt-dir, or NULL */
} cl_judge_config;

typedef struct cl_judge cl_judge;

/* Loads the prompts of the selected judges.  NULL with e set (78: a prompt file is missing or
 * unreadable; 2: unknown artefact). */
cl_judge *cl_judge_new(const cl_judge_config *cfg, cl_err *e);
void cl_judge_free(cl_judge *j);

/* Whether judge k was selected. */
int cl_judge_selected(const cl_judge *j, cl_judge_kind k);

/* The key a judge's results are stored under: "extracted", "interactivity", "accuracy",
 * "helpfulness", "clarify_or_answer". */
const char *cl_judge_key(cl_judge_kind k);
/* "unit", "paper-train" or "paper-eval". */
const char *cl_itr_scale_name(cl_itr_scale s);

/* "unit", "paper-train", "paper-eval", or "paper": the paper's scale of the setting, training
 * when the judges rate the forward window (context_full 0), evaluation when they rate the
 * whole conversation.  -1 with e set (usage) otherwise. */
int cl_itr_scale_parse(const char *name, int context_full, cl_itr_scale *s, cl_err *e);

/* The scale a record's judge.interactivity.scale names, as a static string: "unit",
 * "paper-train", "paper-eval" ("paper", which earlier versions wrote for 2(S-2.5), is
 * "paper-eval"), anything else "unknown". */
const char *cl_itr_scale_known(const char *recorded);

/* ---- what gets judged ------------------------------------------------------------------ */

/* One judged conversation of a record.  A record with "candidates" (cl-rollout --branch) has
 * one unit per future of each candidate: its history is the record's "messages" and its window
 * the candidate reply followed by the future's messages.  Any other record with "messages"
 * (cl-rollout --full, or a state) is one unit whose window is its whole conversation.  System
 * messages are left out of both. */
typedef struct cl_judge_unit {
    int cand, fut;   /* indexes into candidates[].futures[]; -1, -1 for the record itself */
    jv history;      /* messages before the window (owned array) */
    jv window;       /* messages of the window (owned array) */
} cl_judge_unit;

/* The units of rec.  0 with *units (malloc'd, *n >= 0) or -1 with e set (65, naming the field
 * that is missing or of the wrong kind). */
int cl_judge_units(const jv *rec, cl_judge_unit **units, int *n, cl_err *e);
void cl_judge_units_free(cl_judge_unit *units, int n);

/* "full" or "cC/fF": names the unit in sample keys and messages. */
void cl_judge_unit_name(const cl_judge_unit *u, char *buf, size_t n);

/* The unit's object inside rec (borrowed view copied out: owned), i.e. rec itself or
 * rec.candidates[c].futures[f]. */
jv cl_judge_unit_get(const jv *rec, const cl_judge_unit *u);
/* rec (consumed) with field key of the unit's object set to value (consumed). */
jv cl_judge_unit_set(jv rec, const cl_judge_unit *u, const char *key, jv value);

/* ---- asking and reading ---------------------------------------------------------------- */

/* The chat messages (owned array) that ask judge k about unit u of rec.  The accuracy judge
 * reads the unit's extracted.answer instead of the transcript when there is one (and requires
 * it when this judge extracts answers).  Invalid with e set (65: the record lacks what the
 * judge needs, e.g. the reference for accuracy, the ambiguity label for clarify-or-answer or
 * the answer whose extraction failed; 78: a prompt file names a variable that does not
 * exist). */
jv cl_judge_request(const cl_judge *j, cl_judge_kind k, const jv *rec, const cl_judge_unit *u, cl_err *e);

/* rec (consumed) with text stored as extracted.KIND (KIND the configured artefact) at unit u,
 * beside any other kind extracted before. */
jv cl_judge_store_extracted(const cl_judge *j, jv rec, const cl_judge_unit *u, const char *text);

/* Reads a judge's reply.  For CL_JUDGE_EXTRACT *text gets the artefact (malloc'd); for the
 * others *raw gets the judgement as the judge gave it (range-checked).  -1 with e set (65) when
 * the reply is not the JSON object asked for or the value is missing or out of range: the
 * caller may ask again. */
int cl_judge_parse(const cl_judge *j, cl_judge_kind k, const char *reply, double *raw,
                   char **text, cl_err *e);

/* The score of one judgement of unit u of rec: the paper's interactivity scale is rescaled to
 * 2(S-2.5); clarify-or-answer is 1 when asking matches the item's ambiguity; the others are
 * the judgement itself. */
double cl_judge_score(const cl_judge *j, cl_judge_kind k, const jv *rec, double raw);

/* The item's ambiguity for clarify-or-answer (Abg-CoQA): 1 ambiguous, 0 not, -1 unknown; from
 * metadata.ambiguous, else a completion of "ambiguous" / "non_ambiguous". */
int cl_judge_item_ambiguity(const jv *rec);

/* Summary of a unit's judgements (raw[i] as given, score[i] after cl_judge_score) as the
 * judge.NAME object: {"n", "failed", "raw": [...], "mean", "sd", "min", "max"} (mean etc. of the
 * scores, sd the sample standard deviation, 0 for one sample) plus "scale" for
 * interactivity.  n may be 0 (all failed): then only n, failed, raw and scale. */
jv cl_judge_summary(const cl_judge *j, cl_judge_kind k, const double *raw, const double *score,
                    int n, int failed);

#endif
