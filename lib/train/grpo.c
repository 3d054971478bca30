/* grpo.c — GRPO rows to replies with advantages; the GRPO objective of a micro-batch. */
#include "train/grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/stream.h"

void cl_ft_grpo_free(cl_ft_grpo *g)
{
    free(g->adv);
    free(g->off);
    free(g->old);
    memset(g, 0, sizeof *g);
}

/* The numbers of array field `key` (or of element `at` of it when at >= 0) into a fresh array;
 * *n their count.  -1 with e naming the field when it is not an array of finite numbers. */
static int num_array(const jv *row, const char *key, int at, double **out, int *n, cl_err *e)
{
    jv v = cl_json_get(row, key);
    if (at >= 0 && jv_get_kind(v) == JV_KIND_ARRAY) v = jv_array_get(v, at);
    int rc = 0;
    *out = NULL;
    *n = 0;
    if (jv_get_kind(v) != JV_KIND_ARRAY) {
        rc = -1;
    } else {
        *n = jv_array_length(jv_copy(v));
        *out = malloc(sizeof(double) * (size_t)(*n ? *n : 1));
        if (!*out) abort();
        for (int i = 0; i < *n && !rc; i++) {
            jv x = jv_array_get(jv_copy(v), i);
            if (jv_get_kind(x) != JV_KIND_NUMBER || !isfinite(jv_number_value(x)))
                rc = -1;
            else
                (*out)[i] = jv_number_value(x);
            jv_free(x);
        }
    }
    jv_free(v);
    if (rc) {
        free(*out);
        *out = NULL;
        if (at >= 0) return cl_err_set(e, CL_EXIT_DATAERR, "field \"%s\"[%d] must be an array of numbers", key, at);
        return cl_err_set(e, CL_EXIT_DATAERR, "field \"%s\" must be an array of numbers", key);
    }
    return 0;
}

static int push_reply(cl_ft_data *d, cl_ft_grpo *g, cl_ft_example *ex, double adv, const double *lp, cl_err *e)
{
    size_t k = (size_t)d->n, nt = (size_t)ex->seq[0].loss_tokens;
    size_t c1 = g->cap, c2 = g->cap;
    if (cl_grow((void **)&d->ex, &g->dcap, k + 1, sizeof *d->ex) || cl_grow((void **)&g->adv, &c1, k + 1, sizeof *g->adv) ||
        cl_grow((void **)&g->off, &c2, k + 1, sizeof *g->off) ||
        cl_grow((void **)&g->old, &g->tcap, (size_t)g->ntok + nt, sizeof *g->old))
        return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    g->cap = c1;
    d->cap = g->dcap;
    g->adv[k] = adv;
    g->off[k] = g->ntok;
    for (size_t j = 0; j < nt; j++) g->old[g->ntok + (long)j] = lp ? (float)lp[j] : NAN;
    d->hash = cl_hash64(ex->seq[0].ids, sizeof(int) * (size_t)ex->seq[0].len, d->hash);
    d->hash = cl_hash64(ex->seq[0].mask, (size_t)ex->seq[0].len, d->hash);
    d->hash = cl_hash64(&adv, sizeof adv, d->hash);
    d->hash = cl_hash64(g->old + g->ntok, sizeof(float) * nt, d->hash);
    g->ntok += (long)nt;
    d->ex[d->n++] = *ex;
    return 0;
}

/* One row: its replies rendered, advantaged and appended.  -1 with e naming the field. */
static int grpo_row(cl_ft_data *d, cl_ft_grpo *g, const jv *row, cl_tokenizer *tok, const cl_ft_data_opts *o,
                    const cl_grpo_config *gc, cl_err *e)
{
    if (jv_get_kind(*row) != JV_KIND_OBJECT) return cl_err_set(e, CL_EXIT_DATAERR, "a row must be a JSON object");
    jv comps = cl_json_get(row, "completions");
    int k = jv_get_kind(comps) == JV_KIND_ARRAY ? jv_array_length(jv_copy(comps)) : 0, nr = 0, rc = 0;
    double *rw = NULL, *adv = NULL;
    if (k == 0) {
        jv_free(comps);
        return cl_err_set(e, CL_EXIT_DATAERR, "field \"completions\" must be a non-empty array of replies");
    }
    if (num_array(row, "rewards", -1, &rw, &nr, e)) rc = -1;
    else if (nr != k)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "field \"rewards\" has %d values for %d completions", nr, k);
    int has_lp = cl_json_has(row, "logps");
    if (!rc && has_lp) {
        jv l = cl_json_get(row, "logps");
        if (jv_get_kind(l) != JV_KIND_ARRAY || jv_array_length(jv_copy(l)) != k)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "field \"logps\" must be an array of %d arrays (one per completion)", k);
        jv_free(l);
    }
    if (!rc) {
        adv = malloc(sizeof(double) * (size_t)k);
        if (!adv) abort();
        cl_grpo_advantages(gc, rw, k, adv);
        int flat = k > 1;
        for (int i = 1; i < k; i++) flat &= rw[i] == rw[0];
        g->flat_groups += flat;
    }
    cl_ft_data_opts so = *o;
    so.kind = CL_FT_SFT;
    for (int i = 0; i < k && !rc; i++) {
        /* each reply is an SFT example whose loss falls on the reply only */
        jv one = JV_OBJECT(jv_string("prompt"), cl_json_get(row, "prompt"), jv_string("completion"),
                           jv_array_get(jv_copy(comps), i));
        cl_ft_example ex;
        cl_err re = {0};
        int tr = 0, st = cl_ft_render_row(&one, tok, &so, &ex, &tr, &re);
        jv_free(one);
        if (st < 0) {
            rc = cl_err_set(e, re.code ? re.code : CL_EXIT_DATAERR, "completions[%d]: %s", i, re.msg);
            break;
        }
        if (st == 0) {
            d->no_loss++;
            continue;
        }
        d->truncated += tr;
        double *lp = NULL;
        int nl = 0, want = ex.seq[0].loss_tokens;
        if (has_lp && num_array(row, "logps", i, &lp, &nl, e)) rc = -1;
        if (lp && (tr ? nl < want : nl != want)) {
            /* the sampler's tokens are not the ones the reply renders to (a reply cut at its
             * token limit has no end of turn; text can tokenise otherwise than it was sampled):
             * its ratio falls back to the current policy, as without "logps" */
            free(lp);
            lp = NULL;
            g->mismatched++;
        }
        if (!rc) rc = push_reply(d, g, &ex, adv[i], lp, e);
        if (rc) cl_ft_example_free(&ex);
        g->recorded += lp && !rc;
        free(lp);
    }
    jv_free(comps);
    free(rw);
    free(adv);
    return rc ? -1 : 0;
}

int cl_ft_grpo_load(cl_ft_data *d, cl_ft_grpo *g, const char *path, cl_tokenizer *tok, const cl_ft_data_opts *o,
                    const cl_grpo_config *gc, cl_err *e)
{
    cl_reader *r = cl_reader_open(path, e);
    if (!r) return -1;
    d->kind = CL_FT_GRPO;
    if (!d->hash) d->hash = 0x636c2d6772706full;
    cl_line line;
    int rc, st = 0;
    while ((rc = cl_reader_next(r, &line, e)) == 1) {
        if (line.len == 0 || strspn(line.text, " \t") == line.len) continue;
        d->rows++;
        g->groups++;
        jv row = cl_json_parse(line.text, line.len);
        cl_err re = {0};
        st = jv_is_valid(row) ? grpo_row(d, g, &row, tok, o, gc, &re) : cl_err_set(&re, CL_EXIT_DATAERR, "not valid JSON");
        jv_free(row);
        if (st) {
            cl_err_set(e, re.code ? re.code : CL_EXIT_DATAERR, "%s:%llu: %s", cl_reader_name(r),
                       (unsigned long long)line.lineno, re.msg);
            st = -1;
            break;
        }
    }
    cl_reader_close(r);
    return rc < 0 || st < 0 ? -1 : 0;
}

void cl_ft_grpo_map(const cl_ft_batch *bt, const int *idx, const long *off, float *tok, float *pos, int to_pos)
{
    long cells = (long)bt->b * bt->t;
    int *next = calloc((size_t)(bt->nseq ? bt->nseq : 1), sizeof(int));
    if (!next) abort();
    /* a sequence's tokens lie in order within one row, so its j-th loss token comes j-th */
    for (long i = 0; i < cells; i++) {
        int s = bt->seqid[i];
        if (bt->target[i] < 0 || s < 0) {
            if (to_pos) pos[i] = NAN;
            continue;
        }
        long at = off[idx[s]] + next[s]++;
        if (to_pos)
            pos[i] = tok[at];
        else
            tok[at] = pos[i];
    }
    free(next);
}

int cl_ft_grpo_token_logps(cl_llama *m, const cl_ft_data *d, const cl_ft_grpo *g, int batch, int packing,
                           int max_len, int pad_id, cl_ft_batch *bt, float *out, cl_err *e)
{
    cl_ft_plan p;
    if (cl_ft_plan_new(&p, d, batch, e)) return -1;
    float *lp = NULL;
    int rc = 0;
    for (int b = 0; b < p.nbatches && !rc; b++) {
        const int *idx = p.sorted + p.start[b];
        rc = cl_ft_batch_build(bt, d, idx, p.count[b], packing, max_len, pad_id, e);
        float *nl = rc ? NULL : realloc(lp, sizeof(float) * (size_t)bt->b * bt->t);
        if (!rc && !nl) rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        if (!rc) {
            lp = nl;
            rc = cl_llama_forward(m, bt->ids, bt->pos, bt->seg, bt->b, bt->t, e);
        }
        if (!rc) {
            cl_llama_head(m, bt->target, NULL, lp);
            cl_ft_grpo_map(bt, idx, g->off, out, lp, 0);
        }
    }
    free(lp);
    cl_ft_plan_free(&p);
    return rc;
}

int cl_ft_grpo_micro(cl_llama *m, const cl_ft_batch *bt, const cl_grpo_config *c, const double *adv,
                     const float *old, const float *ref, double norm, cl_ft_grpo_out *out, cl_err *e)
{
    size_t n = (size_t)bt->b * bt->t;
    float *lp = malloc(sizeof(float) * n * 2);
    if (!lp) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    float *coef = lp + n;
    int rc = cl_llama_forward(m, bt->ids, bt->pos, bt->seg, bt->b, bt->t, e);
    if (!rc) {
        cl_llama_head(m, bt->target, NULL, lp);
        memset(out, 0, sizeof *out);
        out->loss = cl_grpo_loss(c, lp, bt->target, bt->seqid, adv, old, ref, (int)n, norm, coef, &out->mt);
        cl_llama_head(m, bt->target, coef, lp);
        cl_llama_backward(m);
    }
    free(lp);
    return rc;
}
