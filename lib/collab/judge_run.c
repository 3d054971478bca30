#include "collab/judge_run.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "collab/schema.h"

/* Records in flight at once: enough to keep the client's max-inflight busy with a few calls
 * per record, bounded so memory stays flat on long streams. */
#define MAX_JOBS 256

typedef struct unit_state {
    double *raw[CL_JUDGE_NKINDS], *score[CL_JUDGE_NKINDS];
    int n[CL_JUDGE_NKINDS], failed[CL_JUDGE_NKINDS], open[CL_JUDGE_NKINDS];
    char *error[CL_JUDGE_NKINDS];       /* last failure of the judge on this unit */
} unit_state;

typedef struct job {
    jv rec;
    char *id, *src;
    uint64_t lineno;
    cl_judge_unit *units;
    int nunits;
    unit_state *us;
    int pending;
    char *error;                        /* first failure message, the record fails */
    jv usage;
    struct job *next;
} job;

typedef struct run {
    cl_io *io;
    cl_llm *llm;
    const cl_judge *j;
    const cl_judge_run_opts *o;
    job *head, *tail;
    int njobs;
    long units, retries, failed_samples, failed_units[CL_JUDGE_NKINDS], judged_units[CL_JUDGE_NKINDS];
    double sd_sum[CL_JUDGE_NKINDS];
} run;

typedef struct call {
    run *r;
    job *jb;
    int unit, sample, attempt;
    cl_judge_kind k;
} call;

/* The record fails with its first failure's message: "UNIT: what: why". */
static void job_fail(job *jb, int unit, const char *what, const char *why)
{
    if (jb->error)
        return;
    char name[64];
    cl_judge_unit_name(&jb->units[unit], name, sizeof name);
    size_t n = sizeof name + strlen(what) + strlen(why) + 8;
    jb->error = malloc(n);
    if (!jb->error)
        abort();
    snprintf(jb->error, n, "%s: %s: %s", name, what, why);
}

static void submit(run *r, job *jb, int unit, cl_judge_kind k, int sample, int attempt);

static int selected(const run *r, cl_judge_kind k) { return cl_judge_selected(r->j, k); }

/* Scoring judges of a unit once its extraction (if any) is settled. */
static void submit_scoring(run *r, job *jb, int u)
{
    /* every sample of every judge is counted open first, so a request that cannot even be
     * built (it fails at once) settles the unit only after the last one */
    for (int k = CL_JUDGE_EXTRACT + 1; k < CL_JUDGE_NKINDS; k++)
        if (selected(r, (cl_judge_kind)k))
            jb->us[u].open[k] = r->o->samples;
    for (int k = CL_JUDGE_EXTRACT + 1; k < CL_JUDGE_NKINDS; k++)
        if (selected(r, (cl_judge_kind)k))
            for (int s = 0; s < r->o->samples; s++)
                submit(r, jb, u, (cl_judge_kind)k, s, 0);
}

/* Stores the finished judge k of unit u in the record. */
static void settle(run *r, job *jb, int u, cl_judge_kind k)
{
    unit_state *us = &jb->us[u];
    const cl_judge_unit *unit = &jb->units[u];
    /* in sample order, whatever order the replies came in, so output bytes are stable */
    int n = 0;
    for (int i = 0; i < r->o->samples; i++)
        if (!isnan(us->raw[k][i])) {
            us->raw[k][n] = us->raw[k][i];
            us->score[k][n++] = us->score[k][i];
        }
    jv summary = cl_judge_summary(r->j, k, us->raw[k], us->score[k], n, us->failed[k]);
    if (us->n[k] == 0) {
        char what[128];
        snprintf(what, sizeof what, "%s: no readable judgement", cl_judge_key(k));
        job_fail(jb, u, what, us->error[k] ? us->error[k] : "?");
        r->failed_units[k]++;
    } else {
        r->judged_units[k]++;
        r->sd_sum[k] += cl_json_num(&summary, "sd", 0);
    }
    jv obj = cl_judge_unit_get(&jb->rec, unit);
    jv judge = cl_json_get(&obj, "judge");
    jv scores = cl_json_get(&obj, "scores");
    jv_free(obj);
    if (jv_get_kind(judge) != JV_KIND_OBJECT) {
        jv_free(judge);
        judge = jv_object();
    }
    if (jv_get_kind(scores) != JV_KIND_OBJECT) {
        jv_free(scores);
        scores = jv_object();
    }
    int had = cl_json_has(&scores, cl_judge_key(k));
    if (us->n[k] > 0)
        scores = cl_json_set_num(scores, cl_judge_key(k), cl_json_num(&summary, "mean", 0));
    else if (had) /* never a stale score, and never a 0 for a failure */
        scores = jv_object_delete(scores, jv_string(cl_judge_key(k)));
    judge = cl_json_set(judge, cl_judge_key(k), summary);
    jb->rec = cl_judge_unit_set(jb->rec, unit, "judge", judge);
    if (us->n[k] > 0 || had)
        jb->rec = cl_judge_unit_set(jb->rec, unit, "scores", scores);
    else
        jv_free(scores);
}

/* Once every judge of unit u is finished, stores them all in judge order: replies arrive in
 * any order, and the record's keys must not depend on it (a replay writes the same bytes). */
static void settle_if_done(run *r, job *jb, int u)
{
    for (int k = CL_JUDGE_EXTRACT + 1; k < CL_JUDGE_NKINDS; k++)
        if (selected(r, (cl_judge_kind)k) && jb->us[u].open[k] > 0)
            return;
    for (int k = CL_JUDGE_EXTRACT + 1; k < CL_JUDGE_NKINDS; k++)
        if (selected(r, (cl_judge_kind)k))
            settle(r, jb, u, (cl_judge_kind)k);
}

static void on_reply(void *ctx, const cl_llm_result *res)
{
    call *c = ctx;
    run *r = c->r;
    job *jb = c->jb;
    unit_state *us = &jb->us[c->unit];
    cl_judge_kind k = c->k;
    jb->usage = cl_llm_usage_add(r->llm, jb->usage, res);
    cl_err e = {0};
    double raw = 0;
    char *text = NULL;
    int ok = 0;
    if (res->status != 0) {
        cl_err_set(&e, res->status, "%s", res->error ? res->error : "call failed");
    } else if (cl_judge_parse(r->j, k, res->content, &raw, &text, &e) == 0) {
        ok = 1;
    } else if (c->attempt < r->o->retries) {
        /* an unreadable reply: ask again as a new sample */
        r->retries++;
        submit(r, jb, c->unit, k, c->sample, c->attempt + 1);
        jb->pending--;
        free(c);
        return;
    }
    jb->pending--;
    if (!ok) {
        free(us->error[k]);
        us->error[k] = strdup(e.msg);
        r->failed_samples++;
    }
    if (k == CL_JUDGE_EXTRACT) {
        const cl_judge_unit *unit = &jb->units[c->unit];
        if (ok) {
            jb->rec = cl_judge_store_extracted(r->j, jb->rec, unit, text);
            free(text);
            r->judged_units[k]++;
        } else {
            job_fail(jb, c->unit, "extraction failed", e.msg);
            r->failed_units[k]++;
        }
        submit_scoring(r, jb, c->unit);
    } else {
        if (ok) {
            us->raw[k][c->sample] = raw;
            us->score[k][c->sample] = cl_judge_score(r->j, k, &jb->rec, raw);
            us->n[k]++;
        } else {
            us->failed[k]++;
        }
        if (--us->open[k] == 0)
            settle_if_done(r, jb, c->unit);
    }
    free(c);
}

static void submit(run *r, job *jb, int unit, cl_judge_kind k, int sample, int attempt)
{
    unit_state *us = &jb->us[unit];
    cl_err e = {0};
    jv msgs = cl_judge_request(r->j, k, &jb->rec, &jb->units[unit], &e);
    if (!jv_is_valid(msgs)) {
        /* the record lacks what this judge needs: no call, the judge fails on this unit */
        jv_free(msgs);
        job_fail(jb, unit, cl_judge_key(k), e.msg);
        if (k == CL_JUDGE_EXTRACT) {
            r->failed_units[k]++;
            submit_scoring(r, jb, unit);
        } else {
            us->failed[k]++;
            free(us->error[k]);
            us->error[k] = strdup(e.msg);
            if (--us->open[k] == 0)
                settle_if_done(r, jb, unit);
        }
        return;
    }
    call *c = malloc(sizeof *c);
    if (!c)
        abort();
    *c = (call){r, jb, unit, sample, attempt, k};
    char uname[64], key[1024];
    cl_judge_unit_name(&jb->units[unit], uname, sizeof uname);
    snprintf(key, sizeof key, "%s/judge/%s/%s/s%d/a%d/seed%" PRIu64, jb->id, cl_judge_key(k), uname, sample,
             attempt, r->o->seed);
    jb->pending++;
    /* Samples and re-asks carry distinct seeds, so servers that honour "seed" draw distinct
     * judgements even when the requests are otherwise identical; a single first ask is sent
     * with the role's own parameters only. */
    jv params = jv_null();
    if (r->o->samples > 1 || attempt > 0)
        params = cl_json_set_num(jv_object(), "seed", (double)(r->o->seed + (uint64_t)sample + 1000u * (uint64_t)attempt));
    cl_llm_submit(r->llm, r->o->role, msgs, params, key, on_reply, c);
}

static void job_free(job *jb)
{
    for (int u = 0; u < jb->nunits; u++) {
        for (int k = 0; k < CL_JUDGE_NKINDS; k++) {
            free(jb->us[u].raw[k]);
            free(jb->us[u].score[k]);
            free(jb->us[u].error[k]);
        }
    }
    free(jb->us);
    cl_judge_units_free(jb->units, jb->nunits);
    jv_free(jb->rec);
    jv_free(jb->usage);
    free(jb->id);
    free(jb->src);
    free(jb->error);
    free(jb);
}

/* Writes finished records from the head of the queue, in input order. */
static int flush(run *r, cl_err *e)
{
    while (r->head && r->head->pending == 0) {
        job *jb = r->head;
        r->head = jb->next;
        if (!r->head)
            r->tail = NULL;
        r->njobs--;
        jv rec = jv_copy(jb->rec);
        if (jv_get_kind(jb->usage) == JV_KIND_OBJECT && jv_object_length(jv_copy(jb->usage)) > 0)
            rec = cl_json_set(rec, "judge_usage", jv_copy(jb->usage));
        int rc;
        if (jb->error) {
            cl_rec where = {.src = jb->src, .lineno = jb->lineno};
            rc = cl_io_fail(r->io, &where, rec, jb->error, e);
        } else {
            rc = cl_io_put(r->io, rec, e);
        }
        job_free(jb);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static job *job_start(run *r, cl_rec *rec)
{
    job *jb = calloc(1, sizeof *jb);
    if (!jb)
        abort();
    jb->rec = jv_copy(*cl_rec_value(rec));
    const char *id = cl_json_str(&jb->rec, "id");
    char buf[32];
    snprintf(buf, sizeof buf, "#%" PRIu64, rec->index);
    jb->id = strdup(id ? id : buf);
    jb->src = strdup(rec->src);
    jb->lineno = rec->lineno;
    jb->usage = jv_null();
    if (!r->tail)
        r->head = jb;
    else
        r->tail->next = jb;
    r->tail = jb;
    r->njobs++;
    cl_err e = {0};
    if (cl_judge_units(&jb->rec, &jb->units, &jb->nunits, &e) < 0) {
        jb->error = strdup(e.msg);
        return jb;
    }
    r->units += jb->nunits;
    jb->us = calloc((size_t)jb->nunits + 1, sizeof *jb->us);
    if (!jb->us)
        abort();
    for (int u = 0; u < jb->nunits; u++)
        for (int k = 0; k < CL_JUDGE_NKINDS; k++) {
            jb->us[u].raw[k] = calloc((size_t)r->o->samples, sizeof(double));
            jb->us[u].score[k] = calloc((size_t)r->o->samples, sizeof(double));
            if (!jb->us[u].raw[k] || !jb->us[u].score[k])
                abort();
            for (int i = 0; i < r->o->samples; i++)
                jb->us[u].raw[k][i] = NAN; /* not judged (yet) */
        }
    /* Hold the record open until every unit's calls are submitted, so that a callback
     * cannot see it finished half way. */
    jb->pending++;
    for (int u = 0; u < jb->nunits; u++) {
        if (selected(r, CL_JUDGE_EXTRACT))
            submit(r, jb, u, CL_JUDGE_EXTRACT, 0, 0);
        else
            submit_scoring(r, jb, u);
    }
    jb->pending--;
    return jb;
}

static void add_stats(run *r)
{
    jv s = cl_json_set_num(jv_object(), "units", (double)r->units);
    s = cl_json_set_num(s, "retries", (double)r->retries);
    s = cl_json_set_num(s, "failed_samples", (double)r->failed_samples);
    for (int k = 0; k < CL_JUDGE_NKINDS; k++) {
        if (!selected(r, (cl_judge_kind)k))
            continue;
        jv o = cl_json_set_num(jv_object(), "judged", (double)r->judged_units[k]);
        o = cl_json_set_num(o, "failed", (double)r->failed_units[k]);
        if (k != CL_JUDGE_EXTRACT && r->judged_units[k] > 0)
            o = cl_json_set_num(o, "mean_sd", r->sd_sum[k] / (double)r->judged_units[k]);
        s = cl_json_set(s, cl_judge_key((cl_judge_kind)k), o);
    }
    cl_io_stat(r->io, "judge", s);
}

int cl_judge_run(cl_io *io, cl_llm *llm, const cl_judge *j, const cl_judge_run_opts *o, cl_err *e)
{
    run r = {.io = io, .llm = llm, .j = j, .o = o};
    int more = 1, rc = 0;
    cl_err input = {0}; /* a fatal input error: the records read before it are still finished */
    while ((more || r.head) && rc == 0) {
        while (more && r.njobs < MAX_JOBS && cl_llm_queued(llm) < 4L * MAX_JOBS) {
            cl_rec rec;
            int got = cl_io_next(io, &rec, &input);
            if (got > 0 && (got = cl_schema_admit(io, &rec, CL_SCHEMA_STATE, &input)) == 0)
                continue; /* malformed, skipped with --skip-bad */
            if (got <= 0) {
                more = 0;
                break;
            }
            job_start(&r, &rec);
            if (flush(&r, e) < 0) { /* records that needed no call leave at once */
                rc = -1;
                break;
            }
        }
        if (rc == 0 && cl_llm_pending(llm) > 0)
            cl_llm_step(llm, more ? 0.05 : 1.0);
        if (rc == 0 && flush(&r, e) < 0)
            rc = -1;
    }
    if (rc < 0) {
        /* the output is gone: drain the callbacks of calls in flight before freeing what
         * they point to */
        cl_llm_stop(llm, 1);
        cl_llm_run(llm);
    }
    while (r.head) {
        job *n = r.head->next;
        job_free(r.head);
        r.head = n;
    }
    add_stats(&r);
    if (rc == 0 && input.code) {
        *e = input;
        rc = -1;
    }
    return rc;
}
