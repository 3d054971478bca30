/* data.c — rows to rendered, truncated token sequences; length-bucketed micro-batches. */
#include "train/data.h"

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/stream.h"

uint64_t cl_ft_rand(uint64_t seed, uint64_t stream, uint64_t i, uint64_t n)
{
    uint64_t key[2] = {stream, i};
    return n ? cl_hash64(key, sizeof key, seed) % n : 0;
}

void cl_ft_example_free(cl_ft_example *ex)
{
    for (int s = 0; s < ex->nseq; s++) {
        free(ex->seq[s].ids);
        free(ex->seq[s].mask);
    }
    memset(ex, 0, sizeof *ex);
}

void cl_ft_data_free(cl_ft_data *d)
{
    for (int i = 0; i < d->n; i++) cl_ft_example_free(&d->ex[i]);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

/* ---- rows -> messages ------------------------------------------------------------------- */

typedef struct msgs {
    cl_chat_msg *v;
    int n;
    size_t cap;
} msgs;

static int msgs_push(msgs *m, const char *role, const char *content)
{
    if (cl_grow((void **)&m->v, &m->cap, (size_t)m->n + 1, sizeof *m->v)) return -1;
    m->v[m->n++] = (cl_chat_msg){role, content};
    return 0;
}

/* Appends the messages of field `key` of row: a string (one message of role `role`), one
 * {role, content} object, or an array of them.  Pointers borrow from row. */
static int field_msgs(const jv *row, const char *key, const char *role, msgs *out, cl_err *e)
{
    jv v = cl_json_get(row, key);
    jv_kind k = jv_get_kind(v);
    int rc = 0;
    if (k == JV_KIND_STRING) {
        rc = msgs_push(out, role, cl_json_str(row, key));
    } else if (k == JV_KIND_OBJECT || k == JV_KIND_ARRAY) {
        int n = k == JV_KIND_ARRAY ? jv_array_length(jv_copy(v)) : 1;
        if (n == 0) rc = cl_err_set(e, CL_EXIT_DATAERR, "field \"%s\" is an empty array", key);
        for (int i = 0; rc == 0 && i < n; i++) {
            /* Elements stay alive inside row, so borrowed strings remain valid after jv_free. */
            jv m = k == JV_KIND_ARRAY ? jv_array_get(jv_copy(v), i) : jv_copy(v);
            const char *r = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "role") : NULL;
            const char *c = r ? cl_json_str(&m, "content") : NULL;
            if (!r || !c)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "field \"%s\"%s: a message needs string \"role\" and \"content\"",
                                key, k == JV_KIND_ARRAY ? "[]" : "");
            else
                rc = msgs_push(out, r, c);
            jv_free(m);
        }
    } else {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "field \"%s\" %s", key,
                        k == JV_KIND_INVALID ? "is missing" : "must be a string, a message or an array of messages");
    }
    jv_free(v);
    if (rc > 0) rc = -1;
    return rc < 0 && !e->code ? cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory") : rc;
}

/* ---- rendering -------------------------------------------------------------------------- */

/* Renders m[0..n) and the length of the prompt part m[0..k) with the generation prompt (the
 * completion starts there).  The full rendering must extend the prompt's, as CollabLLM's DPO
 * script asserts for its chat template. */
static int render_split(cl_tokenizer *tok, cl_chat_format f, const cl_chat_msg *m, int n, int k,
                        cl_chat_tokens *full, int *plen, cl_err *e)
{
    cl_chat_tokens pre = {0};
    int rc = cl_chat_render(tok, f, m, (size_t)n, 0, full, e);
    if (!rc) rc = cl_chat_render(tok, f, m, (size_t)k, 1, &pre, e);
    if (!rc && (pre.ids.n > full->ids.n || memcmp(pre.ids.v, full->ids.v, pre.ids.n * sizeof(int32_t))))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "the %s rendering of the completion does not extend the rendered prompt",
                        cl_chat_format_name(f));
    *plen = (int)pre.ids.n;
    cl_chat_tokens_free(&pre);
    return rc;
}

/* Copies tokens [from, to) of c into s; masks before `loss_from` are cleared. */
static int seq_set(cl_ft_seq *s, const cl_chat_tokens *c, int from, int to, int loss_from)
{
    s->len = to - from;
    s->ids = malloc(sizeof(int) * (size_t)(s->len ? s->len : 1));
    s->mask = malloc((size_t)(s->len ? s->len : 1));
    if (!s->ids || !s->mask) return -1;
    s->loss_tokens = 0;
    for (int i = 0; i < s->len; i++) {
        s->ids[i] = c->ids.v[from + i];
        s->mask[i] = from + i >= loss_from && c->mask[from + i] && i > 0;
        s->loss_tokens += s->mask[i];
    }
    return 0;
}

int cl_ft_render_row(const jv *row, cl_tokenizer *tok, const cl_ft_data_opts *o, cl_ft_example *ex,
                     int *truncated, cl_err *e)
{
    memset(ex, 0, sizeof *ex);
    *truncated = 0;
    if (jv_get_kind(*row) != JV_KIND_OBJECT) return cl_err_set(e, CL_EXIT_DATAERR, "a row must be a JSON object");
    msgs m = {0};
    int nc = o->kind == CL_FT_PAIRS ? 2 : 1, k = 0, ends[2] = {0, 0}, loss_from = 0, rc = 0;
    if (o->kind == CL_FT_SFT && cl_json_has(row, "messages")) {
        /* a dialogue: every assistant turn is trained; the prompt is what precedes the last one */
        rc = field_msgs(row, "messages", "user", &m, e);
        k = m.n;
        while (k > 0 && strcmp(m.v[k - 1].role, "assistant")) k--;
        if (!rc && k == 0) {
            free(m.v);
            return 0;
        }
        k--;
        ends[0] = m.n;
    } else {
        const char *ckey = o->kind == CL_FT_PAIRS ? "chosen" : cl_json_has(row, "completion") ? "completion" : "chosen";
        rc = field_msgs(row, "prompt", "user", &m, e);
        k = m.n;
        loss_from = -1; /* only the completion */
        if (!rc) rc = field_msgs(row, ckey, "assistant", &m, e);
        ends[0] = m.n;
        if (!rc && nc == 2) rc = field_msgs(row, "rejected", "assistant", &m, e);
        ends[1] = m.n;
    }
    cl_chat_tokens full[2];
    memset(full, 0, sizeof full);
    int plen = 0, clen[2] = {0, 0};
    for (int s = 0; !rc && s < nc; s++) {
        /* the rejected reply follows the prompt directly: move it next to the prompt */
        int n = ends[s] - (s ? ends[0] - k : 0);
        cl_chat_msg *conv = m.v;
        if (s) {
            conv = malloc(sizeof *conv * (size_t)n);
            if (!conv) { rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory"); break; }
            memcpy(conv, m.v, sizeof *conv * (size_t)k);
            memcpy(conv + k, m.v + ends[0], sizeof *conv * (size_t)(ends[1] - ends[0]));
        }
        int pl = 0;
        rc = render_split(tok, o->format, conv, n, k, &full[s], &pl, e);
        if (s) free(conv);
        plen = pl;
        clen[s] = (int)full[s].ids.n - pl;
    }
    free(m.v);
    if (!rc) {
        /* keep_end: the prompt loses tokens from its start; a completion longer than the room
         * left is cut at its end */
        int cmax = clen[0] > clen[1] ? clen[0] : clen[1];
        int keep = plen;
        if (o->max_prompt_len > 0 && keep > o->max_prompt_len) keep = o->max_prompt_len;
        if (keep + cmax > o->max_len) keep = o->max_len - cmax > 1 ? o->max_len - cmax : (plen ? 1 : 0);
        if (keep > plen) keep = plen;
        int cut = plen - keep;
        ex->nseq = nc;
        for (int s = 0; s < nc && !rc; s++) {
            int end = (int)full[s].ids.n;
            if (end - cut > o->max_len) end = cut + o->max_len;
            if (cut || end < (int)full[s].ids.n) *truncated = 1;
            if (seq_set(&ex->seq[s], &full[s], cut, end, loss_from < 0 ? plen : 0))
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            if (ex->seq[s].len > ex->len) ex->len = ex->seq[s].len;
        }
        if (!rc)
            for (int s = 0; s < nc; s++)
                if (ex->seq[s].loss_tokens == 0) rc = 1;
    }
    for (int s = 0; s < nc; s++) cl_chat_tokens_free(&full[s]);
    if (rc) {
        cl_ft_example_free(ex);
        return rc > 0 ? 0 : -1;
    }
    return 1;
}

int cl_ft_data_load(cl_ft_data *d, const char *path, cl_tokenizer *tok, const cl_ft_data_opts *o, cl_err *e)
{
    cl_reader *r = cl_reader_open(path, e);
    if (!r) return -1;
    d->kind = o->kind;
    if (!d->hash) d->hash = 0x636c2d6674ull;
    cl_line line;
    int rc, st = 0;
    while ((rc = cl_reader_next(r, &line, e)) == 1) {
        if (line.len == 0 || strspn(line.text, " \t") == line.len) continue;
        d->rows++;
        /* The same check as every record reader (records.h): libjq alone accepts invalid
         * UTF-8 (replacing it) and a raw NUL inside a string. */
        cl_json_check chk;
        int valid = cl_json_validate(line.text, line.len, &chk) == 0;
        jv row = valid ? cl_json_parse(line.text, line.len) : jv_invalid();
        cl_err re = {0};
        cl_ft_example ex;
        int tr = 0;
        if (!valid) {
            cl_err_set(&re, CL_EXIT_DATAERR, "byte %zu: %s", chk.err_off + 1, chk.err_what);
            st = -1;
        } else {
            st = cl_ft_render_row(&row, tok, o, &ex, &tr, &re);
            if (o->kind == CL_FT_SFT && !cl_json_has(&row, "messages") && !cl_json_has(&row, "completion"))
                d->pairs_as_sft++;
        }
        jv_free(row);
        if (st < 0) {
            cl_err_set(e, re.code ? re.code : CL_EXIT_DATAERR, "%s:%llu: %s", cl_reader_name(r),
                       (unsigned long long)line.lineno, re.msg);
            break;
        }
        if (st == 0) {
            d->no_loss++;
            continue;
        }
        d->truncated += tr;
        if (cl_grow((void **)&d->ex, &d->cap, (size_t)d->n + 1, sizeof *d->ex)) {
            cl_ft_example_free(&ex);
            st = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            break;
        }
        for (int s = 0; s < ex.nseq; s++) {
            d->hash = cl_hash64(ex.seq[s].ids, sizeof(int) * (size_t)ex.seq[s].len, d->hash);
            d->hash = cl_hash64(ex.seq[s].mask, (size_t)ex.seq[s].len, d->hash);
        }
        d->ex[d->n++] = ex;
    }
    cl_reader_close(r);
    return rc < 0 || st < 0 ? -1 : 0;
}

void cl_ft_data_split(cl_ft_data *from, cl_ft_data *to, int count, uint64_t seed)
{
    /* Fisher-Yates over the whole set, then the tail is held out; the rest keeps file order. */
    int n = from->n;
    int *perm = malloc(sizeof(int) * (size_t)n);
    uint8_t *held = calloc((size_t)n, 1);
    if (!perm || !held) abort();
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)cl_ft_rand(seed, 0x73706c6974ull, (uint64_t)i, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = n - count; i < n; i++) held[perm[i]] = 1;
    memset(to, 0, sizeof *to);
    to->kind = from->kind;
    to->ex = malloc(sizeof *to->ex * (size_t)(count ? count : 1));
    if (!to->ex) abort();
    to->cap = (size_t)count;
    to->hash = from->hash ^ 0x6576616cull;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (held[i])
            to->ex[to->n++] = from->ex[i];
        else
            from->ex[kept++] = from->ex[i];
    }
    from->n = kept;
    free(perm);
    free(held);
}

/* ---- plans ------------------------------------------------------------------------------ */

static const cl_ft_data *sort_data;
static int by_len(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    int li = sort_data->ex[i].len, lj = sort_data->ex[j].len;
    return li != lj ? (li > lj) - (li < lj) : (i > j) - (i < j);
}

int cl_ft_plan_new(cl_ft_plan *p, const cl_ft_data *d, int size, cl_err *e)
{
    memset(p, 0, sizeof *p);
    p->epoch = -1;
    if (d->n == 0) return cl_err_set(e, CL_EXIT_DATAERR, "no usable rows");
    p->nbatches = (d->n + size - 1) / size;
    p->sorted = malloc(sizeof(int) * (size_t)d->n);
    p->start = malloc(sizeof(int) * (size_t)p->nbatches * 3);
    if (!p->sorted || !p->start) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    p->count = p->start + p->nbatches;
    p->order = p->count + p->nbatches;
    for (int i = 0; i < d->n; i++) p->sorted[i] = i;
    sort_data = d;
    qsort(p->sorted, (size_t)d->n, sizeof(int), by_len);
    for (int b = 0; b < p->nbatches; b++) {
        p->start[b] = b * size;
        p->count[b] = d->n - b * size < size ? d->n - b * size : size;
    }
    return 0;
}

void cl_ft_plan_epoch(cl_ft_plan *p, long epoch, uint64_t seed)
{
    for (int i = 0; i < p->nbatches; i++) p->order[i] = i;
    for (int i = p->nbatches - 1; i > 0; i--) {
        int j = (int)cl_ft_rand(seed, (uint64_t)epoch, (uint64_t)i, (uint64_t)i + 1);
        int t = p->order[i];
        p->order[i] = p->order[j];
        p->order[j] = t;
    }
    p->epoch = epoch;
}

void cl_ft_plan_free(cl_ft_plan *p)
{
    free(p->sorted);
    free(p->start);
    memset(p, 0, sizeof *p);
}

/* ---- batches ---------------------------------------------------------------------------- */

long cl_ft_loss_tokens(const cl_ft_data *d, const int *idx, int n, int chosen_only)
{
    long t = 0;
    for (int i = 0; i < n; i++)
        for (int s = 0; s < (chosen_only ? 1 : d->ex[idx[i]].nseq); s++) t += d->ex[idx[i]].seq[s].loss_tokens;
    return t;
}

void cl_ft_batch_free(cl_ft_batch *bt)
{
    free(bt->ids);
    memset(bt, 0, sizeof *bt);
}

int cl_ft_batch_build(cl_ft_batch *bt, const cl_ft_data *d, const int *idx, int n, int packing, int max_len,
                      int pad_id, cl_err *e)
{
    int nseq = 0, longest = 1;
    for (int i = 0; i < n; i++) {
        nseq += d->ex[idx[i]].nseq;
        if (d->ex[idx[i]].len > longest) longest = d->ex[idx[i]].len;
    }
    /* rows: sequence -> (row, offset); first fit in the batch's order (already length-sorted) */
    int *row = malloc(sizeof(int) * (size_t)nseq * 3), *off = row + nseq, *fill = off + nseq;
    if (!row) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    int nrows = 0, t = packing ? 1 : longest;
    for (int i = 0, q = 0; i < n; i++)
        for (int s = 0; s < d->ex[idx[i]].nseq; s++, q++) {
            int len = d->ex[idx[i]].seq[s].len, r = nrows;
            if (packing)
                for (r = 0; r < nrows && fill[r] + len > max_len; r++) {}
            if (r == nrows) fill[nrows++] = 0;
            row[q] = r;
            off[q] = fill[r];
            fill[r] += len;
            if (packing && fill[r] > t) t = fill[r];
        }
    long cells = (long)nrows * t;
    if (cells > bt->cap) {
        free(bt->ids);
        bt->ids = malloc(sizeof(int) * (size_t)cells * 5);
        if (!bt->ids) {
            free(row);
            return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory for a batch of %ld tokens", cells);
        }
        bt->cap = (int)cells;
    }
    bt->pos = bt->ids + cells;
    bt->seg = bt->pos + cells;
    bt->target = bt->seg + cells;
    bt->seqid = bt->target + cells;
    bt->b = nrows;
    bt->t = t;
    bt->nseq = nseq;
    bt->nex = n;
    bt->loss_tokens = 0;
    for (long i = 0; i < cells; i++) {
        bt->ids[i] = pad_id;
        bt->pos[i] = (int)(i % t);
        bt->seg[i] = -1 - (int)(i % t); /* padding attends only to itself */
        bt->target[i] = -1;
        bt->seqid[i] = -1;
    }
    for (int i = 0, q = 0; i < n; i++)
        for (int s = 0; s < d->ex[idx[i]].nseq; s++, q++) {
            const cl_ft_seq *sq = &d->ex[idx[i]].seq[s];
            long base = (long)row[q] * t + off[q];
            for (int j = 0; j < sq->len; j++) {
                bt->ids[base + j] = sq->ids[j];
                bt->pos[base + j] = j;
                bt->seg[base + j] = q;
                if (j + 1 < sq->len && sq->mask[j + 1]) {
                    bt->target[base + j] = sq->ids[j + 1];
                    bt->seqid[base + j] = q;
                    bt->loss_tokens++;
                }
            }
        }
    free(row);
    return 0;
}
