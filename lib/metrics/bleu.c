#include "metrics/bleu.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clones.h"
#include "core/pages.h"
#include "metrics/utext.h"

enum { BLEU_N = 4 };

/* ---- clipped n-gram matches ------------------------------------------------------------
 *
 * Both texts become symbol ids (positions 0..hl-1 the hypothesis, hl..hl+rl-1 the reference).
 * An n-gram is then named by its (n-1)-gram prefix's id and its last symbol: a pair of small
 * integers, so a table indexed by prefix * nsym + symbol replaces hashing whenever that space
 * is small, which for documents of tens of thousands of characters it is.  One walk over the
 * hypothesis gives every n-gram starting at a position its id (dense, in order of first
 * sight) and counts it; one walk over the reference looks its n-grams up and counts them too.
 * A reference n-gram the hypothesis lacks lands on the dead id, and so do all its extensions.
 * The clipped matches of an order are then the sum over ids of min(hypothesis count,
 * reference count); the last order, nobody's prefix, keeps counts in its cells instead of ids
 * and sums the minimum during the reference walk (gram_tally, gram_take).  The walks over the
 * direct table are branch-free: in an edited document matches and misses interleave too
 * irregularly for a branch predictor (BENCHMARKS.md has the history).
 *
 * The tables live in a per-thread scratch.  A cell holds stamp + id, and each call moves the
 * stamp past every value the previous call could have written, so nothing is cleared between
 * calls and a call costs what its text costs, not what its tables hold. */

/* Cells per order before the hashed variant takes over, and the largest stamp (so that a stale
 * cell minus the stamp is >= 2^31).  Tests shrink both to reach every path on small texts. */
#ifndef BLEU_DIRECT_MAX
#define BLEU_DIRECT_MAX ((size_t)1 << 22)
#endif
#ifndef BLEU_STAMP_MAX
#define BLEU_STAMP_MAX (UINT32_MAX / 2)
#endif

typedef struct gram_table {
    uint32_t *cell;    /* stamp + id per (prefix, symbol); below the stamp: not seen */
    uint64_t *key;     /* hashed variant: the (prefix, symbol) each slot holds */
    size_t cap;        /* cells allocated */
    size_t mask;       /* hashed variant: slots - 1, a power of two minus one, below cap */
    uint32_t *hyp, *ref; /* occurrences per id, the dead id's last */
    size_t nids;
    uint32_t n;        /* ids given in this call */
    uint32_t matched;  /* the last order: clipped matches counted in this call */
} gram_table;

typedef struct shared_run {
    size_t h, r, len; /* hyp[h, h + len) == ref[r, r + len) */
} shared_run;

typedef struct bleu_scratch {
    uint32_t *sym;
    size_t nsym;
    uint32_t *anchor;         /* first reference anchor + 1 per hash, 0 = none */
    size_t nanchor;
    uint32_t *chain;          /* per anchor: the next one with its hash + 1 */
    size_t nchain;
    shared_run *runs;
    size_t nruns;
    uint32_t *remap;          /* densify: new symbol per old one */
    size_t nremap;
    uint32_t stamp;           /* this call's; cells below it belong to earlier calls */
    gram_table order[BLEU_N]; /* order[0] counts symbols: no cells */
} bleu_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    bleu_scratch *s = p;
    free(s->sym);
    free(s->anchor);
    free(s->chain);
    free(s->runs);
    free(s->remap);
    for (int k = 0; k < BLEU_N; k++) {
        free(s->order[k].cell);
        free(s->order[k].key);
        free(s->order[k].hyp);
        free(s->order[k].ref);
    }
    free(s);
}

static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

static bleu_scratch *scratch_get(void)
{
    pthread_once(&scratch_once, scratch_key_make);
    bleu_scratch *s = pthread_getspecific(scratch_key);
    if (!s && (s = calloc(1, sizeof *s))) {
        s->stamp = 1; /* above the zeros of fresh cells */
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 64;
    while (c < n)
        c *= 2;
    return c;
}

/* Room for n symbols. */
static int sym_reserve(bleu_scratch *s, size_t n)
{
    if (n <= s->nsym)
        return 0;
    size_t c = pow2_at_least(n);
    uint32_t *p = malloc(c * sizeof *p);
    if (!p)
        return -1;
    free(s->sym);
    s->sym = p;
    s->nsym = c;
    return 0;
}

/* Two zeroed arrays of n uint32_t in *a and *b, both or neither (then -1). */
static int calloc_pair(uint32_t **a, uint32_t **b, size_t n)
{
    *a = calloc(n, sizeof **a);
    *b = calloc(n, sizeof **b);
    if (*a && *b)
        return 0;
    free(*a);
    free(*b);
    return -1;
}

/* Zeroed counts for ids 0..n. */
static int counts_reserve(gram_table *t, size_t n)
{
    if (n < t->nids)
        return 0;
    size_t c = pow2_at_least(n + 1);
    uint32_t *hyp, *ref;
    if (calloc_pair(&hyp, &ref, c) < 0)
        return -1;
    free(t->hyp);
    free(t->ref);
    t->hyp = hyp;
    t->ref = ref;
    t->nids = c;
    return 0;
}

/* At least cap cells holding nothing of this call, with keys when hashed.  Fresh cells are
 * zero, below any stamp.  They come from core/pages, written when made and from 1 MB up on huge
 * pages: the walks read cells before writing them, and a fresh page read first was mapped onto
 * the zero page, whose replacement at the first write cost a TLB shootdown of every other CPU
 * running cl-reward's threads, while 4 KB pages cost TLB misses in walks that land all over a
 * megabyte (together 7-28% of a two-thread run's CPU on 2,000 document pairs).  A table grows by half at
 * least, so that texts of ever greater length do not zero it every time. */
static int cells_reserve(gram_table *t, size_t cap, int hashed)
{
    if (cap > t->cap) {
        size_t bytes = (cap > t->cap + t->cap / 2 ? cap : t->cap + t->cap / 2) * sizeof *t->cell;
        free(t->cell);
        free(t->key);
        t->key = NULL;
        t->cap = 0;
        if (!(t->cell = cl_pages_zalloc(&bytes)))
            return -1;
        t->cap = bytes / sizeof *t->cell;
    }
    if (hashed && !t->key && !(t->key = malloc(t->cap * sizeof *t->key)))
        return -1;
    t->mask = cap - 1;
    return 0;
}

/* Makes room for a call over hl hypothesis positions, which writes stamp + 0 .. stamp + hl:
 * when that would pass BLEU_STAMP_MAX, the cells are zeroed and the stamp starts again at 1.
 * (The stamp is already past every value earlier calls wrote: ngram_stats moves it on by
 * their hl + 1.) */
static void stamp_make_room(bleu_scratch *s, size_t hl)
{
    if ((size_t)s->stamp + hl + 1 > BLEU_STAMP_MAX) {
        for (int k = 1; k < BLEU_N; k++)
            if (s->order[k].cell)
                memset(s->order[k].cell, 0, s->order[k].cap * sizeof *s->order[k].cell);
        s->stamp = 1;
    }
}

static size_t hash_slot(const gram_table *t, uint64_t k)
{
    return (size_t)((k * 0x9e3779b97f4a7c15u) >> 32) & t->mask;
}

/* Where (prefix, symbol) lives: its cell, or in the hashed variant its slot or the empty slot
 * it would take. */
static inline size_t gram_cell(const gram_table *t, int direct, uint32_t nsym, uint32_t stamp,
                               uint32_t prefix, uint32_t symbol)
{
    if (direct)
        return (size_t)prefix * nsym + symbol;
    uint64_t k = (uint64_t)prefix << 32 | symbol;
    size_t at = hash_slot(t, k);
    while (t->cell[at] >= stamp && t->key[at] != k)
        at = (at + 1) & t->mask;
    return at;
}

/* The id of the hypothesis n-gram (prefix, symbol), new when first seen; counts it w times
 * (0 for an n-gram inside a shared run).  A cell not written in this call holds less than the
 * stamp, so cell - stamp wraps past every id. */
static inline uint32_t gram_intern(gram_table *t, int direct, uint32_t nsym, uint32_t stamp,
                                   uint32_t prefix, uint32_t symbol, uint32_t w)
{
    size_t at = gram_cell(t, direct, nsym, stamp, prefix, symbol);
    if (!direct)
        t->key[at] = (uint64_t)prefix << 32 | symbol;
    uint32_t d = t->cell[at] - stamp, v = d < t->n ? d : t->n;
    t->n += d >= t->n;
    t->cell[at] = stamp + v;
    t->hyp[v] += w;
    return v;
}

/* The id of a reference n-gram, or dead when the hypothesis lacks it (or its prefix: the dead
 * prefix's row, or key, is never written); counts it w times. */
static inline uint32_t gram_find(const gram_table *t, int direct, uint32_t nsym, uint32_t stamp,
                                 uint32_t prefix, uint32_t symbol, uint32_t dead, uint32_t w)
{
    uint32_t d = t->cell[gram_cell(t, direct, nsym, stamp, prefix, symbol)] - stamp;
    uint32_t v = d < dead ? d : dead;
    t->ref[v] += w;
    return v;
}

/* The last order's n-grams are nobody's prefix, so they need no ids: a hypothesis n-gram's cell
 * holds stamp + how many times it occurs (outside runs), and each reference occurrence takes
 * one back while any is left, which sums min(hypothesis count, reference count) as it goes.
 * That saves the id counter, two count arrays and their pass at the end.  hl bounds every
 * count, so a cell of an earlier call (below the stamp) reads as more than hl: none. */
static inline void gram_tally(gram_table *t, int direct, uint32_t nsym, uint32_t stamp,
                              uint32_t hl, uint32_t prefix, uint32_t symbol, uint32_t w)
{
    size_t at = gram_cell(t, direct, nsym, stamp, prefix, symbol);
    if (!direct)
        t->key[at] = (uint64_t)prefix << 32 | symbol;
    uint32_t d = t->cell[at] - stamp;
    t->cell[at] = stamp + (d <= hl ? d : 0) + w;
}

/* 1 when a reference n-gram (counted: w) takes one of the hypothesis' occurrences left. */
static inline uint32_t gram_take(gram_table *t, int direct, uint32_t nsym, uint32_t stamp,
                                 uint32_t hl, uint32_t prefix, uint32_t symbol, uint32_t w)
{
    size_t at = gram_cell(t, direct, nsym, stamp, prefix, symbol);
    uint32_t d = t->cell[at] - stamp, take = w & (d - 1 < hl);
    t->cell[at] -= take;
    return take;
}

/* A span of one text to walk: n-grams starting at [from, to), ending by `end` (the text's
 * end), those lying wholly before `covered` inside a shared run and so not counted. */
typedef struct span {
    size_t from, to, end, covered;
} span;

/* The n-grams starting at position i: `in` of them (the shortest) lie inside a run and are
 * not counted; `full` says all four end by the text's end, so the checks compile away. */
#define POSITION_WALK(COUNT1, STEP, LAST)                                                      \
    do {                                                                                       \
        uint32_t v = sym[i];                                                                   \
        COUNT1[v] += in < 1;                                                                   \
        if (full || i + 1 < end)                                                               \
            v = STEP(2, v, sym[i + 1], in < 2);                                                \
        if (full || i + 2 < end)                                                               \
            v = STEP(3, v, sym[i + 2], in < 3);                                                \
        if (full || i + 3 < end)                                                               \
            LAST(v, sym[i + 3], in < 4);                                                       \
    } while (0)

/* Counts a span of the hypothesis (giving ids) or of the reference (looking them up).  The
 * walk keeps each order's table in a local copy: its id counter then lives in a register
 * instead of being reloaded after every store through the tables' pointers.  It is
 * instantiated once per side and table kind so that neither costs anything per position, and
 * its middle loop, where every n-gram is counted and ends in the text, has no per-order
 * checks. */
static inline __attribute__((always_inline)) void
count_span(bleu_scratch *s, span sp, uint32_t nsym, int direct, int reference, uint32_t dead)
{
    const uint32_t *sym = s->sym, stamp = s->stamp;
    uint32_t *count1 = reference ? s->order[0].ref : s->order[0].hyp;
    gram_table t[BLEU_N + 1] = {{0}, {0}, s->order[1], s->order[2], s->order[3]};
    size_t end = sp.end, mid = sp.covered > sp.from ? sp.covered : sp.from;
    size_t last = end > 3 ? end - 3 : 0;
    uint32_t matched = 0;
#define STEP(K, P, SYM, W)                                                                     \
    (reference ? gram_find(&t[K], direct, nsym, stamp, P, SYM, dead, W)                        \
               : gram_intern(&t[K], direct, nsym, stamp, P, SYM, W))
#define LAST(P, SYM, W)                                                                        \
    (reference ? (void)(matched += gram_take(&t[BLEU_N], direct, nsym, stamp, dead, P, SYM, W)) \
               : gram_tally(&t[BLEU_N], direct, nsym, stamp, dead, P, SYM, W))
    size_t i = sp.from, in;
    for (; i < sp.to && i < mid; i++) {
        int full = 0;
        in = sp.covered - i;
        POSITION_WALK(count1, STEP, LAST);
    }
    for (in = 0; i < sp.to && i < last; i++) {
        const int full = 1;
        POSITION_WALK(count1, STEP, LAST);
    }
    for (; i < sp.to; i++) {
        int full = 0;
        POSITION_WALK(count1, STEP, LAST);
    }
#undef STEP
#undef LAST
    for (int k = 1; k < BLEU_N - 1 && !reference; k++)
        s->order[k].n = t[k + 1].n;
    s->order[BLEU_N - 1].matched += matched;
}
#undef POSITION_WALK

/* ---- shared runs ------------------------------------------------------------------------
 *
 * An edited document shares long runs of text with its reference.  Inside a run every n-gram
 * pairs with its twin at the same offset, and such pairs are clipped matches whatever else
 * the texts hold: an n-gram with a such pairs has min(h, r) = a + min(h - a, r - a).  So the
 * walks skip the inside of runs and count only the n-grams not wholly inside one, and each
 * run adds len - n + 1 matches of order n.  Runs are found from anchors (ANCHOR symbols at
 * every ANCHOR_STEP-th reference position) looked up at each hypothesis position, verified
 * and grown both ways; the first anchor at most REACH symbols ahead of where the last run's
 * alignment would continue wins, so a common phrase further on does not pull the alignment
 * away from the edit at hand.  After each run, and from the texts' starts, the search first
 * follows the diagonal (follow_diagonal).  Runs shorter than MIN_RUN save less than their
 * edges cost and are not taken.  Runs go forward in both texts, so no position is in two.
 * Once past GIVE_UP hypothesis positions, when less than a quarter of the positions so far are
 * in runs, the texts are not edits of each other and the search stops: on such pairs it costs
 * a few percent, on edited documents it halves the time. */

enum { ANCHOR = 8, ANCHOR_STEP = 8, REACH = 32, MIN_RUN = 16, GIVE_UP = 256 };

/* follow_diagonal's limits: see there. */
enum { DIAGONAL_MIN_RUN = 8, DIAGONAL_SHORT = 2, DIAGONAL_LOST = 3, DIAGONAL_TRIES = 3 };

static inline size_t anchor_hash(const uint32_t *p, size_t mask)
{
    uint64_t x = p[0] ^ (uint64_t)p[1] << 21 ^ (uint64_t)p[2] << 42;
    uint64_t y = p[3] ^ (uint64_t)p[4] << 21 ^ (uint64_t)p[5] << 42;
    uint64_t z = p[6] ^ (uint64_t)p[7] << 21;
    return (size_t)((x * 0x9e3779b97f4a7c15u ^ y * 0xc2b2ae3d27d4eb4fu ^ z * 0x165667b19e3779f9u) >> 40) & mask;
}

/* How many of a[0..n) and b[0..n) agree from the start.  Runs of an edited document are
 * dozens of symbols long: eight at a time, compared as one block that the compiler can keep in
 * a vector register, instead of a load, compare and branch per symbol. */
static size_t common_prefix(const uint32_t *a, const uint32_t *b, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint32_t diff = 0;
        for (int q = 0; q < 8; q++)
            diff |= a[k + q] ^ b[k + q];
        if (diff)
            break;
    }
    while (k < n && a[k] == b[k])
        k++;
    return k;
}

/* Appends the run hyp[h, h + len) == ref[r, r + len) as run *n; -1 when out of memory. */
static int run_push(bleu_scratch *s, size_t *n, size_t h, size_t r, size_t len)
{
    if (*n == s->nruns) {
        size_t cap = s->nruns ? 2 * s->nruns : 64;
        shared_run *p = realloc(s->runs, cap * sizeof *p);
        if (!p)
            return -1;
        s->runs = p;
        s->nruns = cap;
    }
    s->runs[(*n)++] = (shared_run){h, r, len};
    return 0;
}

/* Edited texts often go on in step with a symbol replaced here and there (a typo, a changed
 * letter): after a run that ends at a mismatch, the next one starts one past it on the same
 * diagonal, and comparing there costs a few vector compares where probing anchors costs a hash,
 * a lookup and a mispredicted branch at every position (a quarter of the time on the noisy
 * corpus of bench-bleu).  So runs are first sought along the diagonal from hyp[a], ref[b].
 * A segment found there cost no search, so one of DIAGONAL_MIN_RUN symbols already pays for its
 * edges (MIN_RUN is for runs the anchors found; 8 instead of 16 took another 12% off the noisy
 * corpus).  Shorter segments are stepped over, and DIAGONAL_LOST in a row shorter than
 * DIAGONAL_SHORT mean the alignment has moved (a word inserted or dropped), so the anchors take
 * over again from the last run's end.  Whether any run was found (1 or 0), or -1 when out of
 * memory. */
static int follow_diagonal(bleu_scratch *s, size_t *n, size_t a, size_t b, size_t *hdone,
                           size_t *rdone, size_t *covered, size_t hl, size_t rl)
{
    const uint32_t *h = s->sym, *r = s->sym + hl;
    size_t n0 = *n;
    for (int lost = 0; lost < DIAGONAL_LOST && a < hl && b < rl; a++, b++) {
        size_t len = common_prefix(h + a, r + b, hl - a < rl - b ? hl - a : rl - b);
        if (len >= DIAGONAL_MIN_RUN) {
            if (run_push(s, n, a, b, len) < 0)
                return -1;
            *covered += len;
            *hdone = a + len;
            *rdone = b + len;
            lost = 0;
        } else
            lost = len < DIAGONAL_SHORT ? lost + 1 : 0;
        a += len;
        b += len;
    }
    return *n > n0;
}

/* The runs hyp[h, h + len) == ref[r, r + len), in order; their count, or -1 when out of
 * memory. */
static long find_shared_runs(bleu_scratch *s, size_t hl, size_t rl)
{
    const uint32_t *h = s->sym, *r = s->sym + hl;
    if (hl < ANCHOR || rl < ANCHOR)
        return 0;
    /* A table eight times the anchors: a position's slot is then empty ~7 times in 8, and the
     * scan mostly stops at the first test instead of mispredicting on a stranger's anchor. */
    size_t slots = pow2_at_least(8 * (rl / ANCHOR_STEP + 1)), mask = slots - 1;
    if (slots > s->nanchor) {
        free(s->anchor);
        if (!(s->anchor = malloc(slots * sizeof *s->anchor)))
            return s->nanchor = 0, -1;
        s->nanchor = slots;
    }
    if (rl / ANCHOR_STEP + 1 > s->nchain) {
        free(s->chain);
        if (!(s->chain = malloc((rl / ANCHOR_STEP + 1) * sizeof *s->chain)))
            return s->nchain = 0, -1;
        s->nchain = rl / ANCHOR_STEP + 1;
    }
    size_t n = 0, hdone = 0, rdone = 0, covered = 0;
    if (follow_diagonal(s, &n, 0, 0, &hdone, &rdone, &covered, hl, rl) < 0)
        return -1;
    size_t i = hdone;
    int diagonal_tries = DIAGONAL_TRIES;
    /* Anchors are made once the diagonal from the start is lost, and only past the reference
     * it covered: a pair with a letter changed here and there may never need them.  Each slot
     * heads its anchors in reference order, so the first one past the runs found so far is the
     * nearest. */
    if (i + ANCHOR <= hl) {
        memset(s->anchor, 0, slots * sizeof *s->anchor);
        size_t first = (rdone + ANCHOR_STEP - 1) / ANCHOR_STEP * ANCHOR_STEP;
        for (size_t j = (rl - ANCHOR) / ANCHOR_STEP * ANCHOR_STEP + ANCHOR_STEP; j > first;) {
            j -= ANCHOR_STEP;
            size_t slot = anchor_hash(r + j, mask);
            s->chain[j / ANCHOR_STEP] = s->anchor[slot];
            s->anchor[slot] = (uint32_t)j + 1;
        }
    }
    while (i + ANCHOR <= hl && (i < GIVE_UP || 4 * covered >= i)) {
        /* Runs only go forward, so anchors behind the last one are dropped from their slot
         * for good: each is stepped over once per pair, not at every probe. */
        uint32_t *head = &s->anchor[anchor_hash(h + i, mask)], a = *head;
        while (a && a - 1 < rdone)
            a = s->chain[(a - 1) / ANCHOR_STEP];
        *head = a;
        size_t j = (size_t)a - 1;
        /* A common phrase far ahead is not the edit we are in: taking it would skip the
         * reference text between as unmatched. */
        if (!a || j < rdone || j > rdone + (i - hdone) + REACH ||
            memcmp(h + i, r + j, ANCHOR * sizeof *h) != 0) {
            i++;
            continue;
        }
        size_t b = i, c = j;
        while (b > hdone && c > rdone && h[b - 1] == r[c - 1]) {
            b--;
            c--;
        }
        size_t e = i + ANCHOR, f = j + ANCHOR;
        size_t grow = common_prefix(h + e, r + f, hl - e < rl - f ? hl - e : rl - f);
        e += grow;
        f += grow;
        if (e - b < MIN_RUN) { /* saves less than its edges cost */
            i++;
            continue;
        }
        if (run_push(s, &n, b, c, e - b) < 0)
            return -1;
        covered += e - b;
        hdone = e;
        rdone = f;
        /* A pair whose runs are not followed by more on their diagonal is edited word by
         * word, not letter by letter: after DIAGONAL_TRIES such runs in a row, stop looking. */
        if (diagonal_tries > 0) {
            int found = follow_diagonal(s, &n, e + 1, f + 1, &hdone, &rdone, &covered, hl, rl);
            if (found < 0)
                return -1;
            diagonal_tries = found ? DIAGONAL_TRIES : diagonal_tries - 1;
        }
        i = hdone;
    }
    return (long)n;
}

/* Walks the stretches of one text (hypothesis: side 0, at offset 0; reference: side 1, at
 * offset hl) that runs do not wholly cover. */
static inline __attribute__((always_inline)) void
walk_outside_runs(bleu_scratch *s, long nruns, int side, size_t base, size_t len, uint32_t nsym,
                  int direct, uint32_t dead)
{
    span sp = {base, base, base + len, base};
    for (long k = 0; k <= nruns; k++) {
        size_t start = k < nruns ? base + (side ? s->runs[k].r : s->runs[k].h) : base + len;
        sp.to = start;
        count_span(s, sp, nsym, direct, side, dead);
        if (k < nruns) {
            /* The run's last three positions start n-grams that leave it. */
            sp.covered = start + s->runs[k].len;
            sp.from = sp.covered > start + 3 ? sp.covered - 3 : start;
        }
    }
}

static void count_direct(bleu_scratch *s, long nruns, size_t hl, size_t rl, uint32_t nsym)
{
    walk_outside_runs(s, nruns, 0, 0, hl, nsym, 1, (uint32_t)hl);
    walk_outside_runs(s, nruns, 1, hl, rl, nsym, 1, (uint32_t)hl);
}

static void count_hashed(bleu_scratch *s, long nruns, size_t hl, size_t rl, uint32_t nsym)
{
    walk_outside_runs(s, nruns, 0, 0, hl, nsym, 0, (uint32_t)hl);
    walk_outside_runs(s, nruns, 1, hl, rl, nsym, 0, (uint32_t)hl);
}

/* The sum over ids < n of min(hyp, ref); then both counts back to zero, the dead id's too,
 * since the next call's dead id may be one of this call's live ones. */
static uint64_t clipped_matches(gram_table *t, uint32_t n, uint32_t dead)
{
    uint32_t c = 0; /* at most hl */
    const uint32_t *hyp = t->hyp, *ref = t->ref;
    for (uint32_t v = 0; v < n; v++)
        c += hyp[v] < ref[v] ? hyp[v] : ref[v];
    memset(t->hyp, 0, n * sizeof *t->hyp);
    memset(t->ref, 0, n * sizeof *t->ref);
    t->ref[dead] = 0;
    return c;
}

/* Renumbers the symbols of s->sym[0..n) densely, in order of first sight; the new count, or 0
 * when out of memory.  Characters arrive with ASCII as itself and the rest from 128, so rows
 * of the direct tables are at least 128 cells wide while a text uses some 60-80 symbols: on a
 * pair that shares little, where nearly every n-gram lands on a cache line of its own, tables
 * half the size miss the cache about half as often (10% of the time on unrelated English).
 * On edited pairs the walks skip the shared runs, and the pass would cost more than it saves. */
static uint32_t densify(bleu_scratch *s, size_t n, uint32_t nsym)
{
    if (nsym > s->nremap) {
        free(s->remap);
        if (!(s->remap = malloc(pow2_at_least(nsym) * sizeof *s->remap)))
            return s->nremap = 0, 0;
        s->nremap = pow2_at_least(nsym);
    }
    uint32_t *restrict m = s->remap, *restrict sym = s->sym, next = 0;
    memset(m, 0xff, nsym * sizeof *m);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = m[sym[i]];
        if (__builtin_expect(v == UINT32_MAX, 0))
            v = m[sym[i]] = next++;
        sym[i] = v;
    }
    return next;
}

/* Clipped matches and hypothesis n-grams of orders 1..4 over s->sym[0..hl+rl), symbols < nsym.
 * With sparse, the symbols may be renumbered densely first (densify) when the texts share
 * little.  -1 when out of memory, or when hl reaches BLEU_STAMP_MAX / 4 (half a billion
 * symbols), past which a call's ids would no longer fit between the stamps. */
static int ngram_stats(bleu_scratch *s, size_t hl, size_t rl, uint32_t nsym, int sparse,
                       bleu_counts *out)
{
    long nruns = find_shared_runs(s, hl, rl);
    if (nruns < 0)
        return -1;
    size_t covered = 0;
    for (long q = 0; q < nruns; q++)
        covered += s->runs[q].len;
    if (sparse && 2 * covered < hl && !(nsym = densify(s, hl + rl, nsym)))
        return -1; /* hl > 0 here, so at least one symbol */

    /* Order 2's prefixes are symbols; later orders' are ids below hl or the dead id hl. */
    int direct = (size_t)nsym * nsym <= BLEU_DIRECT_MAX && (hl + 1) * nsym <= BLEU_DIRECT_MAX;
    if (hl >= BLEU_STAMP_MAX / 4 || counts_reserve(&s->order[0], nsym) < 0)
        return -1;
    for (int k = 1; k < BLEU_N; k++) {
        size_t rows = k == 1 ? nsym : hl + 1;
        size_t cap = direct ? rows * nsym : pow2_at_least(2 * hl);
        if ((k < BLEU_N - 1 && counts_reserve(&s->order[k], hl) < 0) ||
            cells_reserve(&s->order[k], cap, !direct) < 0)
            return -1;
    }
    stamp_make_room(s, hl);
    (direct ? count_direct : count_hashed)(s, nruns, hl, rl, nsym);
    for (int k = 0; k < BLEU_N; k++) {
        gram_table *t = &s->order[k];
        uint64_t c = k == BLEU_N - 1 ? t->matched
                                     : clipped_matches(t, k ? t->n : nsym, k ? (uint32_t)hl : 0);
        t->matched = 0;
        for (long q = 0; q < nruns; q++)
            c += s->runs[q].len > (size_t)k ? s->runs[q].len - k : 0;
        out->correct[k] = c;
        t->n = 0;
        out->total[k] = hl > (size_t)k ? hl - (size_t)k : 0;
    }
    out->hyp_len = hl;
    out->ref_len = rl;
    s->stamp += (uint32_t)hl + 1;
    return 0;
}

/* ---- symbols ---------------------------------------------------------------------------- */

/* Code points as symbols: ASCII as itself, the rest numbered from 128 in order of first sight
 * through a small hash that grows with the text's repertoire. */
typedef struct wide_table {
    uint32_t *key, *val; /* key 0 = free: only code points >= 0x80 come here */
    size_t cap, used;
} wide_table;

static int wide_grow(wide_table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 64;
    uint32_t *key, *val;
    if (calloc_pair(&key, &val, cap) < 0)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->key[i])
            continue;
        size_t s = (t->key[i] * 0x9e3779b1u) & (cap - 1);
        while (key[s])
            s = (s + 1) & (cap - 1);
        key[s] = t->key[i];
        val[s] = t->val[i];
    }
    free(t->key);
    free(t->val);
    t->key = key;
    t->val = val;
    t->cap = cap;
    return 0;
}

static uint32_t wide_symbol(wide_table *t, uint32_t cp)
{
    if (2 * (t->used + 1) > t->cap && wide_grow(t) < 0)
        return UINT32_MAX;
    size_t s = (cp * 0x9e3779b1u) & (t->cap - 1);
    while (t->key[s] && t->key[s] != cp)
        s = (s + 1) & (t->cap - 1);
    if (!t->key[s]) {
        t->key[s] = cp;
        t->val[s] = 128 + (uint32_t)t->used++;
    }
    return t->val[s];
}

/* How many of the eight bytes in w, from the first in memory, are ASCII. */
static inline size_t ascii_bytes(uint64_t w)
{
    uint64_t high = w & 0x8080808080808080u;
    if (!high)
        return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (size_t)__builtin_clzll(high) / 8;
#else
    return (size_t)__builtin_ctzll(high) / 8;
#endif
}

/* Appends the code points of s[0..len) to out, which has room for len, as symbols; the count,
 * or -1 when out of memory.  Text is mostly ASCII: 32 bytes at a time are widened (in the
 * widest vectors the CPU has) and as many kept as come before the first byte that is not.
 * Eight at a time, all or nothing, fell back to a byte at a time around every accent: 2-6% of
 * the whole kernel's time on bench-bleu's corpora. */
CL_WIDEST_VECTORS
static long sym_decode(wide_table *t, const char *s, size_t len, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (i + 32 <= len) { /* and so k + 32 <= len: a symbol takes a byte at least */
            uint64_t w[4];
            memcpy(w, s + i, sizeof w);
            for (int b = 0; b < 32; b++)
                out[k + b] = (unsigned char)s[i + b];
            size_t ascii = 0;
            for (int q = 0; q < 4; q++) {
                size_t a = ascii_bytes(w[q]);
                ascii += a;
                if (a < 8)
                    break;
            }
            k += ascii;
            i += ascii;
            if (ascii == 32)
                continue;
        }
        unsigned char b = (unsigned char)s[i];
        if (b < 128) {
            out[k++] = b;
            i++;
            continue;
        }
        uint32_t cp;
        i += utext_next(s + i, len - i, &cp);
        /* An overlong form ("\xc0\xa4" for "$") decodes to an ASCII code point: the same
         * symbol as the byte itself, not a wide one of its own (fuzz_bleu found it). */
        if ((out[k++] = cp < 0x80 ? cp : wide_symbol(t, cp)) == UINT32_MAX)
            return -1;
    }
    return (long)k;
}

/* Python's math.fsum: the correctly rounded sum (Shewchuk's partials), so the last bit agrees
 * with NLTK. */
static double exact_sum(const double *x, int n)
{
    double p[BLEU_N + 1];
    int np = 0;
    for (int k = 0; k < n; k++) {
        double v = x[k];
        int j = 0;
        for (int i = 0; i < np; i++) {
            double y = p[i];
            if (fabs(v) < fabs(y)) {
                double t = v;
                v = y;
                y = t;
            }
            double hi = v + y, lo = y - (hi - v);
            if (lo != 0.0)
                p[j++] = lo;
            v = hi;
        }
        np = j;
        if (v != 0.0)
            p[np++] = v;
    }
    /* Sum the partials from the top with the round-half-even correction fsum applies. */
    if (np == 0)
        return 0.0;
    double hi = p[--np], lo = 0.0;
    while (np > 0) {
        double v = hi, y = p[--np];
        hi = v + y;
        double yr = hi - v;
        lo = y - yr;
        if (lo != 0.0)
            break;
    }
    if (np > 0 && ((lo < 0.0 && p[np - 1] < 0.0) || (lo > 0.0 && p[np - 1] > 0.0))) {
        double y = lo * 2.0, v = hi + y, yr = v - hi;
        if (y == yr)
            hi = v;
    }
    return hi;
}

int bleu_char_counts(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len,
                     bleu_counts *out)
{
    bleu_scratch *s = scratch_get();
    wide_table t = {0};
    long hl = -1, rl = -1;
    if (s && sym_reserve(s, hyp_len + ref_len + 1) == 0 &&
        (hl = sym_decode(&t, hyp, hyp_len, s->sym)) >= 0)
        rl = sym_decode(&t, ref, ref_len, s->sym + hl);
    int rc = rl >= 0 ? ngram_stats(s, (size_t)hl, (size_t)rl, 128 + (uint32_t)t.used, 1, out) : -1;
    free(t.key);
    free(t.val);
    /* NLTK's modified_precision: the denominator of a pair is max(1, its n-grams). */
    for (int n = 0; rc == 0 && n < BLEU_N; n++)
        out->total[n] += out->total[n] == 0;
    return rc;
}

double bleu_char_score(const bleu_counts *c)
{
    if (c->correct[0] == 0)
        return 0.0;
    double terms[BLEU_N];
    for (int n = 0; n < BLEU_N; n++) {
        /* NLTK: a zero numerator is replaced by sys.float_info.min.  Counts below 2^53 are
         * exact as doubles, so the division rounds as Python's Fraction -> float does. */
        double p = c->correct[n] != 0 ? (double)c->correct[n] / (double)c->total[n] : DBL_MIN;
        terms[n] = 0.25 * log(p);
    }
    double h = (double)c->hyp_len, r = (double)c->ref_len;
    double bp = h > r ? 1.0 : h == 0 ? 0.0 : exp(1.0 - r / h);
    return bp * exp(exact_sum(terms, BLEU_N));
}

double bleu_char(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len)
{
    bleu_counts c;
    return bleu_char_counts(hyp, hyp_len, ref, ref_len, &c) < 0 ? -1 : bleu_char_score(&c);
}

void bleu_counts_add(bleu_counts *sum, const bleu_counts *x)
{
    for (int n = 0; n < BLEU_N; n++) {
        sum->correct[n] += x->correct[n];
        sum->total[n] += x->total[n];
    }
    sum->hyp_len += x->hyp_len;
    sum->ref_len += x->ref_len;
}

/* ---- sacreBLEU 13a ---------------------------------------------------------------------- */


static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* 13a's first regex class: ASCII symbols that always become separate tokens. */
static int is_13a_symbol(unsigned char c)
{
    return (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2b) || c == 0x2f ||
           (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

/* A regex pass with a two-byte pattern: match at i → emit, continue at i + 2 (re.sub). */
enum pass { PASS_B, PASS_C, PASS_D };

static int pass_match(enum pass k, char a, char b)
{
    switch (k) {
    case PASS_B: return !is_digit(a) && (b == '.' || b == ',');
    case PASS_C: return (a == '.' || a == ',') && !is_digit(b);
    default: return is_digit(a) && b == '-';
    }
}

static void run_pass(enum pass k, const cl_buf *in, cl_buf *out)
{
    out->n = 0;
    cl_buf_put(out, "", 0);
    for (size_t i = 0; i < in->n;) {
        if (i + 1 < in->n && pass_match(k, in->p[i], in->p[i + 1])) {
            char a = in->p[i], b = in->p[i + 1];
            if (k == PASS_C)
                cl_buf_putc(out, ' ');
            cl_buf_putc(out, a);
            cl_buf_putc(out, ' ');
            cl_buf_putc(out, b);
            if (k != PASS_C)
                cl_buf_putc(out, ' ');
            i += 2;
        } else {
            cl_buf_putc(out, in->p[i++]);
        }
    }
}

static int starts(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(s, lit, l) == 0;
}

char *bleu_tokenize_13a(const char *s, size_t len)
{
    /* rstrip(): drop trailing Python whitespace. */
    size_t end = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utext_next(s + i, len - i, &cp);
        if (!utext_isspace(cp))
            end = i;
    }
    len = end;
    cl_buf a = {0}, b = {0};
    int has_amp = memchr(s, '&', len) != NULL;
    /* Two passes, as sacreBLEU's two replace() calls: removing "<skipped>" can make a "-\n". */
    cl_buf_put(&b, "", 0);
    for (size_t i = 0; i < len;) {
        if (starts(s + i, len - i, "<skipped>"))
            i += 9;
        else
            cl_buf_putc(&b, s[i++]);
    }
    cl_buf_putc(&a, ' ');
    for (size_t i = 0; i < b.n;) {
        if (starts(b.p + i, b.n - i, "-\n")) {
            i += 2;
        } else if (b.p[i] == '\n') {
            cl_buf_putc(&a, ' ');
            i++;
        } else {
            cl_buf_putc(&a, b.p[i++]);
        }
    }
    if (has_amp) {
        static const char *ent[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
        for (int k = 0; k < 4; k++) {
            b.n = 0;
            cl_buf_put(&b, "", 0);
            size_t el = strlen(ent[k][0]);
            for (size_t i = 0; i < a.n;) {
                if (starts(a.p + i, a.n - i, ent[k][0])) {
                    cl_buf_put(&b, ent[k][1], 1);
                    i += el;
                } else {
                    cl_buf_putc(&b, a.p[i++]);
                }
            }
            cl_buf t = a;
            a = b;
            b = t;
        }
    }
    cl_buf_putc(&a, ' ');
    b.n = 0;
    cl_buf_put(&b, "", 0);
    for (size_t i = 0; i < a.n; i++) {
        if (is_13a_symbol((unsigned char)a.p[i])) {
            cl_buf_putc(&b, ' ');
            cl_buf_putc(&b, a.p[i]);
            cl_buf_putc(&b, ' ');
        } else {
            cl_buf_putc(&b, a.p[i]);
        }
    }
    run_pass(PASS_B, &b, &a);
    run_pass(PASS_C, &a, &b);
    run_pass(PASS_D, &b, &a);
    /* split() on Python whitespace, joined by single spaces. */
    cl_buf out = {0};
    cl_buf_put(&out, "", 0);
    size_t wstart = 0;
    int in_word = 0;
    for (size_t i = 0; i <= a.n && !a.oom;) {
        uint32_t cp = ' ';
        size_t step = i < a.n ? utext_next(a.p + i, a.n - i, &cp) : 1;
        int sp = i == a.n || utext_isspace(cp);
        if (sp && in_word) {
            if (out.n)
                cl_buf_putc(&out, ' ');
            cl_buf_put(&out, a.p + wstart, i - wstart);
        } else if (!sp && !in_word) {
            wstart = i;
        }
        in_word = !sp;
        i += step;
    }
    int oom = a.oom || b.oom || out.oom;
    free(a.p);
    free(b.p);
    if (oom) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

/* Token strings → dense ids written to ids (so word n-grams reuse the code point n-gram
 * counter); returns the number of tokens. */
static size_t token_ids(const char *toks, uint32_t *ids, const char **names, uint32_t *table,
                        uint32_t *ntable, size_t mask)
{
    size_t len = strlen(toks), k = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && toks[j] != ' ')
            j++;
        uint64_t h = 1469598103934665603u;
        for (size_t q = i; q < j; q++)
            h = (h ^ (unsigned char)toks[q]) * 1099511628211u;
        for (size_t s = h & mask;; s = (s + 1) & mask) {
            uint32_t id = table[s];
            if (id == UINT32_MAX) {
                table[s] = *ntable;
                names[*ntable] = toks + i;
                ids[k++] = (*ntable)++;
                break;
            }
            const char *nm = names[id];
            size_t nl = strcspn(nm, " ");
            if (nl == j - i && memcmp(nm, toks + i, nl) == 0) {
                ids[k++] = id;
                break;
            }
        }
        i = j + 1;
    }
    return k;
}

int bleu_word_counts(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len,
                     bleu_counts *out)
{
    char *th = bleu_tokenize_13a(hyp, hyp_len), *tr = bleu_tokenize_13a(ref, ref_len);
    size_t words = (th ? strlen(th) : 0) + (tr ? strlen(tr) : 0) + 2, cap = 16;
    while (cap < 2 * words)
        cap *= 2;
    const char **names = malloc(words * sizeof *names);
    uint32_t *table = malloc(cap * sizeof *table);
    bleu_scratch *s = scratch_get();
    size_t hl = 0, rl = 0;
    uint32_t ntable = 0;
    int rc = th && tr && names && table && s && sym_reserve(s, words) == 0 ? 0 : -1;
    if (rc == 0) {
        memset(table, 0xff, cap * sizeof *table);
        hl = token_ids(th, s->sym, names, table, &ntable, cap - 1);
        rl = token_ids(tr, s->sym + hl, names, table, &ntable, cap - 1);
        rc = ngram_stats(s, hl, rl, ntable, 0, out);
    }
    free(th);
    free(tr);
    free(names);
    free(table);
    return rc;
}

double bleu_word_score(const bleu_counts *c, int effective_order)
{
    if (c->correct[0] + c->correct[1] + c->correct[2] + c->correct[3] == 0)
        return 0.0;
    double prec[BLEU_N] = {0}, smooth = 1.0;
    int eff = BLEU_N;
    for (int n = 0; n < BLEU_N; n++) {
        if (c->total[n] == 0)
            break;
        if (effective_order)
            eff = n + 1;
        if (c->correct[n] == 0) {
            smooth *= 2;
            prec[n] = 100.0 / (smooth * (double)c->total[n]);
        } else {
            prec[n] = 100.0 * (double)c->correct[n] / (double)c->total[n];
        }
    }
    double h = (double)c->hyp_len, r = (double)c->ref_len;
    double bp = h < r ? (h > 0 ? exp(1.0 - r / h) : 0.0) : 1.0;
    double logsum = 0;
    for (int n = 0; n < eff; n++)
        logsum += prec[n] == 0 ? -9999999999.0 : log(prec[n]);
    return bp * exp(logsum / eff) / 100.0;
}

double bleu_word(const char *hyp, size_t hyp_len, const char *ref, size_t ref_len)
{
    bleu_counts c;
    return bleu_word_counts(hyp, hyp_len, ref, ref_len, &c) < 0 ? -1 : bleu_word_score(&c, 1);
}
