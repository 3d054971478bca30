/* report.h — the benchmark report of the paper's Table 1 from scored conversations.
 *
 * Owns: collecting per-run, per-task values of the task metric, the token count and the
 * interactivity rating from scored records; their means with percentile-bootstrap 95%
 * confidence intervals (deterministic from a seed); the relative improvement of every run
 * against a named baseline run and the paired comparison over the items both runs share; the
 * renderings (terminal table, Markdown, TSV, JSON) and the gnuplot chart.
 * Must not know: how scores were produced (judge.h, cl-reward) or where records come from.
 *
 * Values read from a record (the whole-conversation level that cl-rollout --full writes):
 *   scores.<metric>         task metric (0..1), shown x100
 *   scores.tokens           tokens of the conversation (a number), shown in thousands
 *   scores.interactivity    ITR, shown x100; its scale comes from judge.interactivity.scale
 *   task, id                grouping and pairing; records with "error" are counted, not used */
#ifndef CL_REPORT_H
#define CL_REPORT_H

#include <jv.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

typedef struct cl_report_config {
    const char *baseline;   /* label of the baseline run, or NULL (no comparisons) */
    int bootstrap;          /* resamples per interval (0 = 2000) */
    uint64_t seed;          /* --seed: the same seed gives the same intervals */
    const char *metrics;    /* "TASK=NAME,...,NAME": task metric per task (a bare NAME is the
                             * default for every task); NULL = built-in choices */
} cl_report_config;

typedef struct cl_report cl_report;

cl_report *cl_report_new(const cl_report_config *cfg, cl_err *e);
void cl_report_free(cl_report *r);

/* Adds one record (borrowed) of run label.  -1 with e set (65) when the record's
 * interactivity scale differs from earlier records': the two scales are never mixed. */
int cl_report_add(cl_report *r, const char *label, const jv *rec, cl_err *e);

/* Names the runs of n input files: names[i] stays when set (a --label), else gets the file's
 * name without directory and extensions ("-": "stdin"); where two different paths would get
 * the same name, each gets the shortest run of parent directories that tells them apart
 * ("base/scored.jsonl.zst", "collab/scored.jsonl.zst": "base", "collab").  Derived names are
 * malloc'd into owned[i] (freed by the caller).  -1 with e set (2, usage) when two files still
 * share a name: records of different runs are never merged silently. */
int cl_report_run_names(const char *const *paths, int n, const char **names, char **owned, cl_err *e);

/* Computes the report: an owned JSON object (see cl-judge(1), REPORT).  Invalid with e set
 * (65) when the baseline names no run or no record was added. */
jv cl_report_compute(cl_report *r, cl_err *e);

/* Writes rep (borrowed) as "table", "markdown", "tsv" or "json". */
int cl_report_write(const jv *rep, const char *format, FILE *out, cl_err *e);

/* Draws rep as a PNG with gnuplot: one panel per task and measure, a bar per run with its
 * confidence interval.  -1 with e set: 69 when gnuplot cannot be run, 70 when it fails. */
int cl_report_plot(const jv *rep, const char *png, cl_err *e);

/* The percentile bootstrap of the mean used by the report, exposed for tests: B resamples of
 * x[0..n) drawn with splitmix64 seeded by `seed`, interval by linear interpolation between
 * order statistics.  n >= 1. */
void cl_bootstrap_mean_ci(const double *x, int n, int B, uint64_t seed, double level, double *lo, double *hi);

#endif
