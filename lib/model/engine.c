/* engine.c — the continuous-batching engine, the single-sequence engine built on its
 * forward, and sampling. */
#include "model/engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/device.h"
#include "model/linear.h"
#include "model/ops.h"

/* ---- the continuous-batching engine ------------------------------------------------------ */

#define CHUNK 64       /* prompt tokens per forward of the single-sequence engine */
#define PREFILL_MIN 16 /* prompt tokens per step even when decode rows fill step_tokens */
#define REUSE_MIN 8    /* cached positions worth taking instead of computing */

/* The prefix index: every running and kept sequence's tokens, by the hash of each of their
 * first j * REUSE_MIN tokens (level j - 1), so that a waiting prompt meets only the sequences
 * that start as it does.  Walking every running and kept sequence per waiting prompt (hundreds
 * of caches under the default budget, each read from memory after a step's products) was 5% of
 * a cl-rollout run at 128 calls in flight, all of it on one thread while the others waited. */
typedef struct pentry {
    uint64_t h;
    struct pentry *next, **pprev; /* the bucket's chain */
    cl_gen *g;
} pentry;

enum { GEN_WAITING, GEN_RUNNING, GEN_KEPT };

typedef struct kv_page kv_page;

struct cl_gen {
    cl_gen_req r;
    int *tok;            /* prompt, then generated tokens [cap] */
    int ntok, cap, nprompt, fed, made;
    kv_page **pages;     /* the cache: position s in pages[s / CL_BATCH_KV_PAGE] */
    int npages;          /* for cap positions; held from admission (NULL until then) */
    uint64_t rng;
    int rows;            /* rows of this sequence in the current step */
    int state;
    cl_gen *next, *prev; /* wait queue (next); the kept list */
    pentry *pe;          /* [cap / REUSE_MIN]: level j's hash; the first `indexed` are in the index */
    int hashed, indexed; /* levels whose hash is known (indexed <= hashed) */
    long stamp;          /* running: when admitted; kept: when last used (retired, or a source) */
};

/* A page of KV cache: CL_BATCH_KV_PAGE positions of every layer, layer l's keys
 * [CL_BATCH_KV_PAGE][kd] at l * 2 * CL_BATCH_KV_PAGE * kd floats into data, its values after
 * them.  Caches that start with the same tokens hold the same pages for those positions (a
 * page whose every position is shared, never written again), so a prompt that starts as a kept
 * or running sequence does costs neither the rows' copy (3% of a cl-rollout --branch run at 128
 * calls in flight, page faults and memcpy) nor their memory.  A page no cache holds stays
 * mapped as a spare for the next one (its memory faulted in and zeroed once, not per
 * sequence). */
struct kv_page {
    int refs;            /* caches holding it; 0: a spare */
    kv_page *next;       /* the spares */
    float *data;
};

struct cl_batch {
    cl_llama *m;
    size_t kv_budget, page_bytes;
    size_t used, nspare;       /* pages that running and kept sequences hold; spare pages */
    kv_page *spares;           /* with the pages in use, never past the budget */
    int step_tokens;
    cl_gen *wait_head, *wait_tail;
    /* Finished sequences whose caches are kept, most recently used first, for later prompts
     * that start with their tokens (a conversation's next turn, a shared system prompt);
     * the least recently used are the first to go when a waiting sequence needs the room. */
    cl_gen *kept, *kept_tail;
    pentry **ptab; /* the prefix index's buckets [pmask + 1] */
    size_t pmask, pcount;
    long clock;
    long reused;
    cl_gen **run;
    int nrun, caprun;
    /* scratch for one step's rows */
    int rows_cap;
    float *x, *xn, *q, *k, *v, *y, *gt, *up, *hb, *rstd, *logits, *lh, *lt;
    float *rcos, *rsin; /* [rows][head_dim / 2]: the step's rotary angles, shared by the layers */
    float *pscratch;     /* [nscratch][vocab]: each sampling thread's */
    int *iscratch, *pos, *ids, *sampled;
    int nscratch;
    cl_gen **rseq;
};

/* the bytes of one page's rows */
static size_t page_data_bytes(const cl_llama *m)
{
    const cl_llama_config *c = &m->cfg;
    return 2 * sizeof(float) * (size_t)c->layers * CL_BATCH_KV_PAGE * (size_t)c->kv_heads * (size_t)c->head_dim;
}

size_t cl_batch_kv_bytes(const cl_llama *m, int tokens)
{
    return (size_t)((tokens + CL_BATCH_KV_PAGE - 1) / CL_BATCH_KV_PAGE) * page_data_bytes(m);
}

cl_batch *cl_batch_new(cl_llama *m, size_t kv_bytes, int step_tokens, cl_err *e)
{
    cl_batch *b = calloc(1, sizeof *b);
    int v = m->cfg.vocab;
    if (b) {
        b->nscratch = omp_get_max_threads();
        b->pscratch = malloc(sizeof(float) * (size_t)v * (size_t)b->nscratch);
        b->iscratch = malloc(sizeof(int) * (size_t)v * (size_t)b->nscratch);
    }
    if (!b || !b->pscratch || !b->iscratch) {
        cl_batch_free(b);
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
        return NULL;
    }
    /* the products run on the CPU over the decode layout, made once per model */
    if (!m->dev && cl_llama_pack_decode(m, e)) {
        cl_batch_free(b);
        return NULL;
    }
    b->m = m;
    b->kv_budget = kv_bytes;
    b->page_bytes = page_data_bytes(m);
    b->step_tokens = step_tokens > 0 ? step_tokens : 64;
    return b;
}

/* (its pages already released) */
static void gen_free(cl_gen *g)
{
    if (!g) return;
    free(g->tok);
    free(g->pe);
    free(g->pages);
    free(g);
}

/* ---- the prefix index ---- */

/* the hash of level j from level j - 1's (0 for the first) and the level's REUSE_MIN tokens */
static uint64_t level_hash(uint64_t h, const int *t)
{
    for (int i = 0; i < REUSE_MIN; i++) {
        h = (h ^ (uint32_t)t[i]) * 0x9e3779b97f4a7c15u;
        h ^= h >> 31;
    }
    return h;
}

/* g's level hashes over its known tokens, from the first not yet computed */
static void hash_levels(cl_gen *g)
{
    for (; (g->hashed + 1) * REUSE_MIN <= g->ntok; g->hashed++)
        g->pe[g->hashed].h = level_hash(g->hashed ? g->pe[g->hashed - 1].h : 0, g->tok + (size_t)g->hashed * REUSE_MIN);
}

static void pindex_link(cl_batch *b, pentry *e)
{
    pentry **head = &b->ptab[e->h & b->pmask];
    e->next = *head;
    e->pprev = head;
    if (*head) (*head)->pprev = &e->next;
    *head = e;
    b->pcount++;
}

/* Doubles the buckets past two entries a bucket; a failed allocation keeps the table as it is. */
static void pindex_grow(cl_batch *b)
{
    if (b->ptab && b->pcount < 2 * (b->pmask + 1)) return;
    size_t n = b->ptab ? 2 * (b->pmask + 1) : 1024;
    pentry **t = calloc(n, sizeof *t), **old = b->ptab;
    if (!t) return;
    size_t on = old ? b->pmask + 1 : 0;
    b->ptab = t;
    b->pmask = n - 1;
    b->pcount = 0;
    for (size_t i = 0; i < on; i++)
        for (pentry *e = old[i], *nx; e; e = nx) {
            nx = e->next;
            pindex_link(b, e);
        }
    free(old);
}

/* g's levels over its known tokens go into the index (a running sequence's as they become known) */
static void pindex_add(cl_batch *b, cl_gen *g)
{
    hash_levels(g);
    for (; g->indexed < g->hashed; g->indexed++) {
        pindex_grow(b);
        if (!b->ptab) return; /* no index: prompts are computed, not shared */
        g->pe[g->indexed].g = g;
        pindex_link(b, &g->pe[g->indexed]);
    }
}

static void pindex_remove(cl_batch *b, cl_gen *g)
{
    for (int j = 0; j < g->indexed; j++) {
        pentry *e = &g->pe[j];
        *e->pprev = e->next;
        if (e->next) e->next->pprev = e->pprev;
        b->pcount--;
    }
    g->indexed = 0;
}

/* ---- the kept list ---- */

static void kept_unlink(cl_batch *b, cl_gen *g)
{
    if (g->prev) g->prev->next = g->next;
    else b->kept = g->next;
    if (g->next) g->next->prev = g->prev;
    else b->kept_tail = g->prev;
    g->next = g->prev = NULL;
}

static void kept_push(cl_batch *b, cl_gen *g)
{
    g->state = GEN_KEPT;
    g->stamp = ++b->clock;
    g->prev = NULL;
    g->next = b->kept;
    if (b->kept) b->kept->prev = g;
    else b->kept_tail = g;
    b->kept = g;
}

static void free_scratch(cl_batch *b)
{
    free(b->x);
    free(b->pos);
    free(b->rseq);
    b->x = NULL;
    b->pos = b->ids = b->sampled = NULL;
    b->rseq = NULL;
    b->rows_cap = 0;
}

static kv_page *page_alloc(size_t data_bytes)
{
    kv_page *p = malloc(sizeof *p);
    if (p && !(p->data = aligned_alloc(64, data_bytes))) {
        free(p);
        p = NULL;
    }
    return p;
}

static void page_free(kv_page *p)
{
    if (!p) return;
    free(p->data);
    free(p);
}

static int over_budget(const cl_batch *b, size_t pages) { return pages * b->page_bytes > b->kv_budget; }

/* A page no cache holds goes to the spares while they fit beside the pages in use, else back to
 * the system. */
static void page_put(cl_batch *b, kv_page *p)
{
    if (--p->refs > 0) return;
    b->used--;
    if (!over_budget(b, b->used + b->nspare + 1)) {
        p->next = b->spares;
        b->spares = p;
        b->nspare++;
    } else
        page_free(p);
}

/* A page for one cache: a spare, else a new one once enough spares have gone to keep the
 * budget; NULL when out of memory.  A spare holds another cache's rows: its new holder writes
 * each row before it reads it. */
static kv_page *page_get(cl_batch *b)
{
    kv_page *p = b->spares;
    if (p) {
        b->spares = p->next;
        b->nspare--;
    } else if (!(p = page_alloc(b->page_bytes)))
        return NULL;
    p->refs = 1;
    b->used++;
    while (b->spares && over_budget(b, b->used + b->nspare)) {
        kv_page *s = b->spares;
        b->spares = s->next;
        b->nspare--;
        page_free(s);
    }
    return p;
}

/* g's pages leave it (shared ones stay with their other holders). */
static void kv_release(cl_batch *b, cl_gen *g)
{
    if (!g->pages) return;
    for (int i = 0; i < g->npages; i++)
        if (g->pages[i]) page_put(b, g->pages[i]);
    free(g->pages);
    g->pages = NULL;
}

/* The pages that g's cache needs beyond those it shares with a source of len rows. */
static int pages_needed(const cl_gen *g, int len) { return g->npages - len / CL_BATCH_KV_PAGE; }

/* g's cache: src's pages for its first len rows where they fill whole pages, the rest new (the
 * rows of a last page that is partly src's copied); -1 when out of memory, nothing held.  The
 * rows are those g would compute: the same tokens at the same positions, through kernels whose
 * every row is independent of the others in its step. */
static int kv_acquire(cl_batch *b, cl_gen *g, const cl_gen *src, int len)
{
    int shared = src ? len / CL_BATCH_KV_PAGE : 0;
    if (!(g->pages = calloc((size_t)g->npages, sizeof *g->pages))) return -1;
    for (int i = 0; i < g->npages; i++) {
        if (i < shared) {
            g->pages[i] = src->pages[i];
            g->pages[i]->refs++;
        } else if (!(g->pages[i] = page_get(b))) {
            kv_release(b, g);
            return -1;
        }
    }
    int part = src ? len % CL_BATCH_KV_PAGE : 0;
    if (part) {
        size_t kd = (size_t)b->m->cfg.kv_heads * (size_t)b->m->cfg.head_dim, half = CL_BATCH_KV_PAGE * kd;
        const float *from = src->pages[shared]->data;
        float *to = g->pages[shared]->data;
        for (int l = 0; l < 2 * b->m->cfg.layers; l++) /* each layer's keys, then its values */
            memcpy(to + (size_t)l * half, from + (size_t)l * half, sizeof(float) * kd * (size_t)part);
    }
    if (src) {
        g->fed = len;
        b->reused += len;
    }
    return 0;
}

/* A sequence that was running or kept is gone: out of the index and the budget, freed. */
static void forget(cl_batch *b, cl_gen *g)
{
    pindex_remove(b, g);
    kv_release(b, g);
    gen_free(g);
}

void cl_batch_free(cl_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->nrun; i++) kv_release(b, b->run[i]);
    for (cl_gen *g = b->kept; g; g = g->next) kv_release(b, g);
    for (kv_page *p = b->spares, *n; p; p = n) {
        n = p->next;
        page_free(p);
    }
    for (int i = 0; i < b->nrun; i++) gen_free(b->run[i]);
    for (cl_gen *g = b->wait_head, *n; g; g = n) {
        n = g->next;
        gen_free(g);
    }
    for (cl_gen *g = b->kept, *n; g; g = n) {
        n = g->next;
        gen_free(g);
    }
    free(b->run);
    free(b->ptab);
    free_scratch(b);
    free(b->pscratch);
    free(b->iscratch);
    free(b);
}

cl_gen *cl_batch_submit(cl_batch *b, const cl_gen_req *r, cl_err *e)
{
    const cl_llama_config *c = &b->m->cfg;
    if (r->n <= 0) {
        cl_err_set(e, CL_EXIT_DATAERR, "engine: empty prompt");
        return NULL;
    }
    if (r->n >= c->max_pos) {
        cl_err_set(e, CL_EXIT_DATAERR, "engine: the prompt's %d tokens leave no room in the model's %d-token context",
                   r->n, c->max_pos);
        return NULL;
    }
    for (int i = 0; i < r->n; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= c->vocab) {
            cl_err_set(e, CL_EXIT_DATAERR, "engine: token id %d is outside the vocabulary (%d)", r->prompt[i], c->vocab);
            return NULL;
        }
    cl_gen *g = calloc(1, sizeof *g);
    long want = (long)r->n + (r->max_new > 0 ? r->max_new : 1);
    int cap = want < c->max_pos ? (int)want : c->max_pos;
    if (!g || !(g->tok = malloc(sizeof(int) * (size_t)cap)) ||
        !(g->pe = calloc((size_t)cap / REUSE_MIN + 1, sizeof *g->pe))) {
        gen_free(g);
        cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
        return NULL;
    }
    g->r = *r;
    g->r.prompt = NULL;
    memcpy(g->tok, r->prompt, sizeof(int) * (size_t)r->n);
    g->ntok = g->nprompt = r->n;
    g->cap = cap;
    g->rng = r->seed;
    g->npages = (cap + CL_BATCH_KV_PAGE - 1) / CL_BATCH_KV_PAGE;
    g->state = GEN_WAITING;
    hash_levels(g); /* the prompt's, for best_prefix; indexed once admitted */
    if (b->wait_tail) b->wait_tail->next = g;
    else b->wait_head = g;
    b->wait_tail = g;
    return g;
}

/* Takes run[i] out of the running sequences. */
static cl_gen *unrun(cl_batch *b, int i)
{
    cl_gen *g = b->run[i];
    memmove(b->run + i, b->run + i + 1, sizeof *b->run * (size_t)(b->nrun - i - 1));
    b->nrun--;
    return g;
}

/* A running sequence leaves; its cache, valid for its first `fed` positions, is kept (its
 * request's callbacks are not: they belong to the caller). */
static void retire(cl_batch *b, int i)
{
    cl_gen *g = unrun(b, i);
    memset(&g->r, 0, sizeof g->r);
    kept_push(b, g);
}

/* Frees the least recently used kept cache other than `spare`; 0 when there is none. */
static int drop_kept(cl_batch *b, const cl_gen *spare)
{
    cl_gen *g = b->kept_tail;
    if (g && g == spare) g = g->prev;
    if (!g) return 0;
    kept_unlink(b, g);
    forget(b, g);
    return 1;
}

/* How many of g's first n prompt tokens a's tokens start with. */
static int common_prefix(const cl_gen *a, const cl_gen *g, int n)
{
    int j = 0;
    while (j < n && a->tok[j] == g->tok[j]) j++;
    return j;
}

/* c is the better source of len rows than best: a kept cache before a running one, the most
 * recently used kept one, the running one admitted first */
static int better_source(const cl_gen *c, const cl_gen *best)
{
    if (c->state != best->state) return c->state == GEN_KEPT;
    return c->state == GEN_KEPT ? c->stamp > best->stamp : c->stamp < best->stamp;
}

/* The cache that holds the longest prefix of g's prompt now: a kept sequence's or a running
 * one's (its first `fed` rows are final), at least REUSE_MIN long and short of the prompt's last
 * token (whose logits g needs); NULL when none.  *later: the longest prefix a running sequence
 * will hold once it has prefilled its prompt (the futures of one candidate, the choices of one
 * call: identical prompts admitted together, better computed once and shared).
 * The index's levels, deepest first: a sequence met first at level lv shares fewer than
 * (lv + 2) * REUSE_MIN tokens with g, so once a source that long is found the levels below
 * have nothing as long (nor anything that could make g wait: *later below len). */
static cl_gen *best_prefix(const cl_batch *b, const cl_gen *g, int *len, int *later)
{
    cl_gen *best = NULL;
    int limit = g->nprompt - 1;
    *len = *later = 0;
    for (int lv = limit / REUSE_MIN - 1; lv >= 0 && b->ptab && *len < (lv + 2) * REUSE_MIN; lv--) {
        uint64_t h = g->pe[lv].h;
        for (const pentry *e = b->ptab[h & b->pmask]; e; e = e->next) {
            cl_gen *c = e->g;
            if (e->h != h || c == g || e != &c->pe[lv]) continue;
            if (c->state == GEN_KEPT) {
                int j = common_prefix(c, g, c->fed < limit ? c->fed : limit);
                if (j > *len || (j == *len && best && better_source(c, best))) best = c, *len = j;
            } else {
                int j = common_prefix(c, g, c->ntok < limit ? c->ntok : limit), now = j < c->fed ? j : c->fed;
                if (now > *len || (now == *len && best && better_source(c, best))) best = c, *len = now;
                if (c->fed < c->nprompt && j > *later) *later = j;
            }
        }
    }
    if (*len < REUSE_MIN) {
        *len = 0;
        best = NULL;
    }
    return best;
}

/* k, when kept, becomes the most recently used; 1 when it is kept. */
static int touch_kept(cl_batch *b, cl_gen *k)
{
    if (k->state != GEN_KEPT) return 0;
    kept_unlink(b, k);
    kept_push(b, k);
    return 1;
}

long cl_batch_reused(const cl_batch *b) { return b->reused; }

size_t cl_batch_kv_held(const cl_batch *b) { return (b->used + b->nspare) * b->page_bytes; }

void cl_batch_cancel(cl_batch *b, cl_gen *g)
{
    for (int i = 0; i < b->nrun; i++)
        if (b->run[i] == g) { /* a cache cut short is not kept */
            forget(b, unrun(b, i));
            return;
        }
    for (cl_gen **p = &b->wait_head, *prev = NULL; *p; prev = *p, p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            if (b->wait_tail == g) b->wait_tail = prev;
            gen_free(g);
            return;
        }
}

int cl_batch_busy(const cl_batch *b) { return b->nrun + (b->wait_head != NULL); }

/* Moves waiting sequences in, in order, while their caches fit (one at a time past the
 * budget), except those whose prompt a running sequence is still prefilling further than any
 * cache holds now: they wait for its rows.  Kept caches give way to them, the least recently
 * used first and the one a sequence reuses last. */
static void admit(cl_batch *b)
{
    for (cl_gen **p = &b->wait_head, *prev = NULL; *p;) {
        cl_gen *g = *p;
        int len, later;
        cl_gen *k = best_prefix(b, g, &len, &later);
        if (later >= len + REUSE_MIN) {
            prev = g;
            p = &g->next;
            continue;
        }
        int kept = k && touch_kept(b, k), need = pages_needed(g, k ? len : 0);
        while (over_budget(b, b->used + (size_t)need) && drop_kept(b, kept ? k : NULL)) {
        }
        if (kept && over_budget(b, b->used + (size_t)need)) {
            drop_kept(b, NULL); /* k, the last one */
            k = NULL;
            need = pages_needed(g, 0);
        }
        if (b->nrun > 0 && over_budget(b, b->used + (size_t)need)) return;
        if (b->nrun == b->caprun) {
            int nc = b->caprun ? 2 * b->caprun : 16;
            cl_gen **nr = realloc(b->run, sizeof *nr * (size_t)nc);
            if (!nr) return; /* try again next step */
            b->run = nr;
            b->caprun = nc;
        }
        if (kv_acquire(b, g, k, len)) return;
        *p = g->next;
        if (b->wait_tail == g) b->wait_tail = prev;
        g->next = NULL;
        /* A kept cache whose every row g now holds too (a conversation's next turn) has nothing
         * left to give: its pages go to g and the spares at once, not when the budget fills. */
        if (kept && k && k->state == GEN_KEPT && len == k->fed) {
            kept_unlink(b, k);
            forget(b, k);
        }
        g->state = GEN_RUNNING;
        g->stamp = ++b->clock;
        pindex_add(b, g);
        b->run[b->nrun++] = g;
    }
}

static int ensure_rows(cl_batch *b, int n)
{
    if (n <= b->rows_cap) return 0;
    const cl_llama_config *c = &b->m->cfg;
    int cap = n > 2 * b->rows_cap ? n : 2 * b->rows_cap;
    size_t d = (size_t)c->hidden, qd = (size_t)c->heads * c->head_dim, kd = (size_t)c->kv_heads * c->head_dim,
           I = (size_t)c->inter, V = (size_t)c->vocab, N = (size_t)cap;
    size_t yd = d > qd ? d : qd, r = b->m->lora_rank ? (size_t)b->m->lora_rank : 1, lt = yd > I ? yd : I;
    free_scratch(b);
    size_t hd = (size_t)c->head_dim;
    b->x = malloc(sizeof(float) * N * (2 * d + yd + qd + 2 * kd + 3 * I + 1 + V + r + lt + hd));
    b->pos = malloc(sizeof(int) * 3 * N);
    b->ids = b->pos + N;
    b->sampled = b->pos + 2 * N;
    b->rseq = malloc(sizeof *b->rseq * N);
    if (!b->x || !b->pos || !b->rseq) {
        free_scratch(b);
        return -1;
    }
    float *p = b->x + N * d;
    b->xn = p, p += N * d;
    b->y = p, p += N * yd;
    b->q = p, p += N * qd;
    b->k = p, p += N * kd;
    b->v = p, p += N * kd;
    b->gt = p, p += N * I;
    b->up = p, p += N * I;
    b->hb = p, p += N * I;
    b->rstd = p, p += N;
    b->lh = p, p += N * r;
    b->lt = p, p += N * lt;
    b->rcos = p, p += N * hd / 2;
    b->rsin = p, p += N * hd / 2;
    b->logits = p;
    b->rows_cap = cap;
    return 0;
}

/* out = x w^T (+ bias): on the model's device when it has one (local:DIR+device=cuda), else
 * linear.h's kernels over the tensor's panels. */
static void rows_product(cl_llama *m, const cl_tensor *w, const cl_tensor *bias, const float *x, float *out, int n)
{
    if (m->dev)
        m->dev->linear_rows(m, w, bias, x, out, n);
    else
        cl_linear_rows(out, x, w->panels, w->panels_dt, bias ? bias->data : NULL, n, w->shape[1], w->shape[0]);
}

/* outs[i] = x W_i^T + b_i for the cnt projections li[0..cnt-1] that read the same x (q, k, v;
 * gate, up), plus scale * (x A^T) B^T where adapters are on: the base products in one parallel
 * loop on the CPU, the adapters after them through the same per-row kernels, so an unmerged
 * adapter is as batch-invariant as the base. */
static void project_rows(cl_batch *b, const cl_linear *li, int cnt, const float *x, float *const *outs, int n)
{
    cl_llama *m = b->m;
    cl_linear_part parts[CL_LINEAR_MAX_PARTS];
    for (int i = 0; i < cnt; i++) {
        if (m->dev)
            rows_product(m, li[i].w, li[i].b, x, outs[i], n);
        else
            parts[i] = (cl_linear_part){outs[i], li[i].w->panels, li[i].w->panels_dt,
                                        li[i].b ? li[i].b->data : NULL, li[i].out};
    }
    if (!m->dev) cl_linear_parts(parts, cnt, x, n, li->in);
    for (int i = 0; i < cnt; i++) {
        if (!li[i].lora_a || !m->lora_on) continue;
        rows_product(m, li[i].lora_a, NULL, x, b->lh, n);
        rows_product(m, li[i].lora_b, NULL, b->lh, b->lt, n);
        for (long j = 0; j < (long)n * li[i].out; j++) outs[i][j] += m->lora_scale * b->lt[j];
    }
}

/* Each row attends to its own sequence's cache, positions 0..pos (its own k/v written).  A row's
 * heads go together over the cache's pages, so a page's rows are read whole, in order; a pass
 * per head read 3 of every row's 18 lines (d 288) at a stride, and with 32-128 sequences the
 * caches come from memory: a third more time in a cl-rollout run.  The per-element order is the
 * per-head order: a score is dot16's, a weighted sum one FMA chain over the positions in order
 * (cl_linear_mix goes on from the page before). */
static void rows_attention(cl_batch *b, int l, int n, int maxlen)
{
    const cl_llama_config *c = &b->m->cfg;
    int hd = c->head_dim, nh = c->heads, qd = nh * hd, kd = c->kv_heads * hd, group = nh / c->kv_heads;
    float scale = (float)(1.0 / sqrt((double)hd));
    long work = 0;
    for (int i = 0; i < n; i++) work += (long)(b->pos[i] + 1) * qd;
#pragma omp parallel if (work > 100000)
    {
        float *sc = malloc(sizeof(float) * (size_t)maxlen * (size_t)nh);
#pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            if (!sc) continue;
            const cl_gen *g = b->rseq[i];
            size_t at = (size_t)l * 2 * CL_BATCH_KV_PAGE * kd;
            const float *q = b->q + (size_t)i * qd;
            float *y = b->y + (size_t)i * qd;
            int len = b->pos[i] + 1;
            for (int s0 = 0; s0 < len; s0 += CL_BATCH_KV_PAGE) {
                int bl = len - s0 < CL_BATCH_KV_PAGE ? len - s0 : CL_BATCH_KV_PAGE;
                const float *kc = g->pages[s0 / CL_BATCH_KV_PAGE]->data + at;
                for (int h = 0; h < nh; h++)
                    cl_linear_strided(sc + (size_t)h * maxlen + s0, q + (size_t)h * hd, kc + (size_t)(h / group) * hd,
                                      (size_t)kd, hd, bl);
            }
            for (int h = 0; h < nh; h++) { /* softmax(scale * scores), in vectors */
                float *sh = sc + (size_t)h * maxlen;
                cl_linear_weights(sh, sh, len, sh[cl_argmax(sh, len)], scale);
                float inv = 1.0f / cl_linear_sum16(sh, len);
                for (int s = 0; s < len; s++) sh[s] *= inv;
            }
            for (int s0 = 0; s0 < len; s0 += CL_BATCH_KV_PAGE) {
                int bl = len - s0 < CL_BATCH_KV_PAGE ? len - s0 : CL_BATCH_KV_PAGE;
                const float *vc = g->pages[s0 / CL_BATCH_KV_PAGE]->data + at + (size_t)CL_BATCH_KV_PAGE * kd;
                for (int h = 0; h < nh; h++)
                    cl_linear_mix(y + (size_t)h * hd, sc + (size_t)h * maxlen + s0, vc + (size_t)(h / group) * hd,
                                  (size_t)kd, bl, hd, s0 > 0);
            }
        }
        free(sc);
    }
}

/* The small per-row steps between the products, each as one loop over rows, split between the
 * threads from ROWS_PAR rows (serial, they left the other thread waiting for about a tenth of a
 * cl-rollout run at 128 in flight).  Each row's bits are those of the row-wise ops
 * (cl_rmsnorm_fwd, cl_rope_rotate). */
#define ROWS_PAR 16

/* x += xn (add) then xn = rmsnorm(x) w */
static void rows_residual_norm(cl_batch *b, int add, const float *w, int n)
{
    const cl_llama_config *c = &b->m->cfg;
    size_t d = (size_t)c->hidden;
#pragma omp parallel for if (n >= ROWS_PAR)
    for (int i = 0; i < n; i++) {
        float *x = b->x + (size_t)i * d, *xn = b->xn + (size_t)i * d;
        if (add)
            for (size_t j = 0; j < d; j++) x[j] += xn[j];
        if (w) cl_rmsnorm_fwd(xn, b->rstd + i, x, w, 1, (int)d, c->rms_eps);
    }
}

/* q and k rotated; k and v into their sequences' caches at layer l */
static void rows_rope_cache(cl_batch *b, int l, int n)
{
    const cl_llama_config *c = &b->m->cfg;
    size_t hd = (size_t)c->head_dim, qd = (size_t)c->heads * hd, kd = (size_t)c->kv_heads * hd;
#pragma omp parallel for if (n >= ROWS_PAR)
    for (int i = 0; i < n; i++) {
        const float *cs = b->rcos + (size_t)i * hd / 2, *sn = b->rsin + (size_t)i * hd / 2;
        cl_rope_rotate(b->q + (size_t)i * qd, cs, sn, 1, c->heads, (int)hd);
        cl_rope_rotate(b->k + (size_t)i * kd, cs, sn, 1, c->kv_heads, (int)hd);
        int s = b->pos[i];
        float *kc = b->rseq[i]->pages[s / CL_BATCH_KV_PAGE]->data +
                    ((size_t)l * 2 * CL_BATCH_KV_PAGE + (size_t)(s % CL_BATCH_KV_PAGE)) * kd;
        memcpy(kc, b->k + (size_t)i * kd, sizeof(float) * kd);
        memcpy(kc + CL_BATCH_KV_PAGE * kd, b->v + (size_t)i * kd, sizeof(float) * kd);
    }
}

/* The forward of n rows (ids from each row's sequence at pos); hidden states end in b->x. */
static void forward_rows(cl_batch *b, const int *ids, int n, int maxlen)
{
    cl_llama *m = b->m;
    const cl_llama_config *c = &m->cfg;
    int d = c->hidden, I = c->inter;
    cl_rope_angles(b->rcos, b->rsin, b->pos, m->inv_freq, n, c->head_dim); /* every layer's */
    if (m->embed->data)
        cl_embed_fwd(b->x, ids, m->embed->data, n, d);
    else /* a tied head's rows live on only in its fp32 panels (cl_llama_pack_decode) */
        for (int i = 0; i < n; i++) cl_linear_unpack_row(b->x + (size_t)i * d, m->embed->panels, CL_F32, ids[i], d);
    for (int l = 0; l < c->layers; l++) {
        cl_layer *ly = &m->layers[l];
        rows_residual_norm(b, l > 0, ly->ln1->data, n); /* the layer before's MLP added */
        project_rows(b, &ly->proj[CL_Q], 3, b->xn, (float *const[]){b->q, b->k, b->v}, n);
        rows_rope_cache(b, l, n);
        rows_attention(b, l, n, maxlen);
        project_rows(b, &ly->proj[CL_O], 1, b->y, &b->xn, n);
        rows_residual_norm(b, 1, ly->ln2->data, n);
        project_rows(b, &ly->proj[CL_GATE], 2, b->xn, (float *const[]){b->gt, b->up}, n);
        cl_swiglu_fwd(b->hb, b->gt, b->up, (long)n * I);
        project_rows(b, &ly->proj[CL_DOWN], 1, b->hb, &b->xn, n);
    }
    rows_residual_norm(b, 1, NULL, n);
}

/* logits [n][vocab] of final hidden states x [n][hidden] */
static void head_rows(cl_batch *b, const float *x, int n)
{
    const cl_llama_config *c = &b->m->cfg;
    cl_rmsnorm_fwd(b->y, b->rstd, x, b->m->norm->data, n, c->hidden, c->rms_eps);
    rows_product(b->m, b->m->lm_head, NULL, b->y, b->logits, n);
}

int cl_batch_step(cl_batch *b)
{
    admit(b);
    if (!b->nrun) return 0;
    const cl_llama_config *c = &b->m->cfg;
    int d = c->hidden, V = c->vocab;
    /* plan: one row per decoding sequence, then prompt chunks in admission order */
    int ndec = 0;
    for (int i = 0; i < b->nrun; i++) ndec += b->run[i]->fed >= b->run[i]->nprompt;
    int left = b->step_tokens - ndec > PREFILL_MIN ? b->step_tokens - ndec : PREFILL_MIN, n = 0;
    for (int i = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        int want = g->ntok - g->fed;
        if (g->fed < g->nprompt) {
            want = want < left ? want : left;
            left -= want;
        }
        g->rows = want;
        n += want;
    }
    if (ensure_rows(b, n) < 0) return 0; /* out of memory: the next step tries again */
    int *ids = b->ids, k = 0, maxlen = 1;
    for (int i = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        for (int j = 0; j < g->rows; j++, k++) {
            ids[k] = g->tok[g->fed + j];
            b->pos[k] = g->fed + j;
            b->rseq[k] = g;
        }
        if (g->fed + g->rows > maxlen) maxlen = g->fed + g->rows;
    }
    forward_rows(b, ids, n, maxlen);
    /* logits for the sequences whose every known token is now in the cache */
    int nl = 0;
    for (int i = 0, r = 0; i < b->nrun; i++) {
        cl_gen *g = b->run[i];
        r += g->rows;
        g->fed += g->rows;
        if (g->rows && g->fed == g->ntok)
            memmove(b->xn + (size_t)nl++ * d, b->x + (size_t)(r - 1) * d, sizeof(float) * (size_t)d);
    }
    head_rows(b, b->xn, nl);
    /* The samples without a token filter are drawn in parallel, each from its own sequence's
     * generator (a softmax over the vocabulary each: drawn by the master thread alone, they were
     * 16% of a cl-rollout run's CPU by perf, while libgomp's waiting took 24%); filtered ones and the
     * callbacks follow in order. */
    for (int i = 0, li = 0; i < b->nrun; i++)
        if (b->run[i]->rows && b->run[i]->fed == b->run[i]->ntok) b->rseq[li++] = b->run[i];
#pragma omp parallel for schedule(dynamic) num_threads(b->nscratch) if (nl > 1)
    for (int li = 0; li < nl; li++) {
        cl_gen *g = b->rseq[li];
        int t = omp_get_thread_num();
        b->sampled[li] = g->r.filter.allows ? -2
                         : cl_sample(b->logits + (size_t)li * V, V, &g->r.sampler, &g->rng,
                                     b->pscratch + (size_t)t * V, b->iscratch + (size_t)t * V);
    }
    for (int i = 0, li = 0; i < b->nrun;) {
        cl_gen *g = b->run[i];
        if (!g->rows || g->fed != g->ntok) {
            i++;
            continue;
        }
        const float *lg = b->logits + (size_t)li * V;
        int tok = b->sampled[li++];
        if (tok == -2)
            tok = cl_sample_filtered(lg, V, &g->r.sampler, &g->rng, b->pscratch, b->iscratch, &g->r.filter);
        int stop = tok < 0;
        if (tok >= 0) {
            g->tok[g->ntok++] = tok;
            if (g->ntok % REUSE_MIN == 0) pindex_add(b, g);
            g->made++;
            stop = g->r.on_token ? g->r.on_token(g->r.ctx, tok, lg) : 0;
        }
        if (stop || g->made >= g->r.max_new || g->ntok >= g->cap) {
            if (g->r.on_end) g->r.on_end(g->r.ctx, stop ? CL_GEN_STOP : CL_GEN_LENGTH);
            retire(b, i);
        } else
            i++;
    }
    return n;
}

/* ---- the single-sequence engine: one cl_gen fed by hand through the batch's forward ---- */

struct cl_engine {
    cl_batch *b;
    cl_gen *g;
};

cl_engine *cl_engine_new(cl_llama *m, int max_seq, cl_err *e)
{
    if (max_seq <= 0) {
        cl_err_set(e, CL_EXIT_USAGE, "engine: context length must be positive");
        return NULL;
    }
    cl_engine *g = calloc(1, sizeof *g);
    if (g && (g->b = cl_batch_new(m, 0, CHUNK, e)) && (g->g = calloc(1, sizeof *g->g))) {
        g->g->cap = max_seq;
        g->g->npages = (max_seq + CL_BATCH_KV_PAGE - 1) / CL_BATCH_KV_PAGE;
        if (kv_acquire(g->b, g->g, NULL, 0) == 0 && ensure_rows(g->b, CHUNK) == 0) return g;
    }
    cl_engine_free(g);
    cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory for a %d-token cache", max_seq);
    return NULL;
}

void cl_engine_free(cl_engine *g)
{
    if (!g) return;
    if (g->g) kv_release(g->b, g->g);
    gen_free(g->g);
    cl_batch_free(g->b);
    free(g);
}

void cl_engine_reset(cl_engine *g) { g->g->fed = 0; }

int cl_engine_len(const cl_engine *g) { return g->g->fed; }

int cl_engine_feed(cl_engine *g, const int *ids, int n, float *logits, cl_err *e)
{
    cl_gen *s = g->g;
    cl_batch *b = g->b;
    const cl_llama_config *c = &b->m->cfg;
    if (n <= 0) return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: nothing to feed");
    if (s->fed + n > s->cap)
        return cl_err_set(e, CL_EXIT_DATAERR, "engine: %d tokens exceed the %d-token context", s->fed + n, s->cap);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return cl_err_set(e, CL_EXIT_DATAERR, "engine: token id %d is outside the vocabulary (%d)", ids[i], c->vocab);
    for (int off = 0; off < n; off += CHUNK) {
        int cnt = n - off < CHUNK ? n - off : CHUNK;
        for (int i = 0; i < cnt; i++) {
            b->pos[i] = s->fed + i;
            b->rseq[i] = s;
        }
        forward_rows(b, ids + off, cnt, s->fed + cnt);
        s->fed += cnt;
        if (off + cnt == n && logits) {
            head_rows(b, b->x + (size_t)(cnt - 1) * c->hidden, 1);
            memcpy(logits, b->logits, sizeof(float) * (size_t)c->vocab);
        }
    }
    return 0;
}

static _Thread_local const float *sort_key;
static int by_prob_desc(const void *a, const void *b)
{
    float x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    return (x < y) - (x > y);
}

/* The sampler over the tokens of allow (NULL: all).  Without a top-k or top-p cut the draw
 * walks blocks of SAMPLE_BLOCK weights by their cl_linear_sum16 sums (computed again on the
 * walk, the same bits, rather than kept in scratch), then the block it falls in token by token.
 * A serial sum of 32000 doubles and a walk through an index array made a sample cost 107 us,
 * 10% of a cl-rollout --branch run's CPU (perf); this way 34 us. */
#define SAMPLE_BLOCK 64
static int sample_from(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch, int *iscratch,
                       const uint64_t *allow)
{
#define ALLOWED(t) (!allow || (allow[(t) / 64] >> ((t) % 64) & 1))
    int best = -1;
    if (!allow)
        best = cl_argmax(logits, v);
    else
        for (int i = 0; i < v; i++)
            if (ALLOWED(i) && (best < 0 || logits[i] > logits[best])) best = i;
    if (best < 0 || s->temperature <= 0 || s->top_k == 1) return best;
    cl_linear_weights(pscratch, logits, v, logits[best], (float)(1.0 / s->temperature));
    if (allow)
        for (int i = 0; i < v; i++)
            if (!ALLOWED(i)) pscratch[i] = 0;
#undef ALLOWED
    *rng += 0x9e3779b97f4a7c15ull;
    double sum = 0, acc = 0, u;
    if ((s->top_k > 0 && s->top_k < v) || (s->top_p > 0 && s->top_p < 1)) {
        int n = v;
        for (int i = 0; i < v; i++) iscratch[i] = i;
        sort_key = pscratch;
        qsort(iscratch, (size_t)v, sizeof(int), by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        if (s->top_p > 0 && s->top_p < 1) {
            double kept = 0, total = 0;
            for (int i = 0; i < n; i++) total += pscratch[iscratch[i]];
            for (int i = 0; i < n; i++) {
                kept += pscratch[iscratch[i]];
                if (kept >= s->top_p * total) { n = i + 1; break; }
            }
        }
        for (int i = 0; i < n; i++) sum += pscratch[iscratch[i]];
        u = cl_hash_uniform(*rng, 0) * sum;
        for (int i = 0; i < n; i++) {
            acc += pscratch[iscratch[i]];
            if (u < acc) return iscratch[i];
        }
        /* rounding left u at the top: the last token of the cut with any mass */
        while (n > 1 && pscratch[iscratch[n - 1]] <= 0) n--;
        return iscratch[n - 1];
    }
    for (int b = 0; b < v; b += SAMPLE_BLOCK) sum += cl_linear_sum16(pscratch + b, v - b < SAMPLE_BLOCK ? v - b : SAMPLE_BLOCK);
    u = cl_hash_uniform(*rng, 0) * sum;
    for (int b = 0; b < v; b += SAMPLE_BLOCK) {
        int e = v - b < SAMPLE_BLOCK ? v : b + SAMPLE_BLOCK;
        double bs = cl_linear_sum16(pscratch + b, e - b);
        if (u >= acc + bs) {
            acc += bs;
            continue;
        }
        for (int i = b; i < e; i++) /* the block's own tokens, whose float sum may round apart */
            if (u < (acc += pscratch[i])) return i;
    }
    /* rounding left u at the top: the last token with any mass (best has some) */
    int last = v - 1;
    while (pscratch[last] <= 0) last--;
    return last;
}

int cl_sample(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch, int *iscratch)
{
    return sample_from(logits, v, s, rng, pscratch, iscratch, NULL);
}

int cl_sample_filtered(const float *logits, int v, const cl_sampler *s, uint64_t *rng, float *pscratch,
                       int *iscratch, const cl_token_filter *f)
{
    if (!f) return sample_from(logits, v, s, rng, pscratch, iscratch, NULL);
    int cut = (s->top_k > 1 && s->top_k < v) || (s->top_p > 0 && s->top_p < 1);
    if (!cut || s->temperature <= 0) {
        int t = sample_from(logits, v, s, rng, pscratch, iscratch, NULL);
        if (f->allows(f->ctx, t)) return t;
    }
    const uint64_t *allow = f->mask(f->ctx);
    return allow ? sample_from(logits, v, s, rng, pscratch, iscratch, allow) : -1;
}

int cl_engine_generate(cl_engine *g, const int *prompt, int n, int max_new, const int *stop, int nstop,
                       const cl_sampler *s, uint64_t seed, int *out, cl_err *e)
{
    int v = g->b->m->cfg.vocab, made = 0;
    float *logits = malloc(sizeof(float) * 2 * (size_t)v);
    int *idx = malloc(sizeof(int) * (size_t)v);
    if (!logits || !idx) {
        free(logits);
        free(idx);
        return cl_err_set(e, CL_EXIT_SOFTWARE, "engine: out of memory");
    }
    uint64_t rng = seed;
    int rc = cl_engine_feed(g, prompt, n, logits, e);
    while (rc == 0 && made < max_new) {
        int tok = cl_sample(logits, v, s, &rng, logits + v, idx);
        out[made++] = tok;
        int stopped = 0;
        for (int i = 0; i < nstop; i++) stopped |= tok == stop[i];
        if (stopped || made == max_new) break;
        rc = cl_engine_feed(g, &tok, 1, logits, e);
    }
    free(logits);
    free(idx);
    return rc ? -1 : made;
}

