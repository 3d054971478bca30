/* tokenizer.c — byte-level BPE: tokenizer.json and tiktoken loading, encode, decode.
 *
 * Layout: every token (model vocabulary and added tokens) lives in one table indexed by id with
 * its file text and the bytes it decodes to.  Merges are a hash map from an id pair to (rank,
 * merged id); tiktoken files become the same map (every split of a token into two tokens is a
 * merge of the token's rank), so one merge loop serves both.  Encoding caches word -> ids. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/files.h"
#include "core/json.h"

/* ---- ids ----------------------------------------------------------------------------- */

int cl_ids_push(cl_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return -1;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void cl_ids_free(cl_ids *ids)
{
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

/* ---- tables -------------------------------------------------------------------------- */

typedef struct tok_entry {
    char *text;        /* as written in the file, NUL-terminated; NULL for a hole */
    char *bytes;       /* what it decodes to */
    uint32_t text_len, len;
    uint8_t kind;      /* enum cl_token_kind */
} tok_entry;

typedef struct added_tok {
    int32_t id;
    uint32_t len;
    const char *s;     /* borrowed from tok[id].text */
    uint8_t lstrip, rstrip, single_word, normalized, special;
} added_tok;

typedef struct pair_slot {
    uint64_t key;      /* (left << 32 | right) + 1; 0 = empty */
    uint32_t rank;
    int32_t id;
} pair_slot;

typedef struct cache_slot {
    uint64_t h;        /* 0 = empty */
    uint32_t off, len; /* word bytes in cache_bytes */
    uint32_t ids, n;   /* ids in cache_ids */
} cache_slot;

typedef struct split_step {
    pcre2_code *re;    /* NULL: no split (ByteLevel without regex) */
    uint8_t prefix_space; /* ByteLevel add_prefix_space */
} split_step;

typedef struct sym {
    int32_t id, prev, next;
} sym;

typedef struct heap_ent {
    uint32_t rank, pos;
    int32_t id;
} heap_ent;

#define MAX_STEPS 8
#define MAX_POST 8
#define CACHE_SLOTS (1u << 16)
#define CACHE_WORD_MAX 256

struct cl_tokenizer {
    char name[256];
    int32_t n;                  /* ids 0..n-1 */
    tok_entry *tok;
    char *arena;                /* one block holding token texts and bytes */
    int32_t *vmap;              /* model vocabulary: text -> id, open addressing, -1 empty */
    size_t vmap_cap;
    pair_slot *pmap;
    size_t pmap_cap;
    int32_t (*merges)[2];
    size_t n_merges;
    int32_t byte_id[256];
    char bu[256][3];            /* byte -> its code point's UTF-8 in the byte-level alphabet */
    uint8_t bu_len[256];
    int16_t ub[324];            /* code point -> byte, -1 when not in the alphabet */
    int ignore_merges;
    int32_t unk;
    added_tok *added;
    size_t n_added;
    uint32_t *by_first;         /* indices into added, grouped by first byte, longest first */
    uint32_t first_off[257];
    uint8_t first[256];         /* some added token starts with this byte */
    int norm_opts;              /* utf8proc options, 0 = no normaliser */
    split_step steps[MAX_STEPS];
    int n_steps;
    char *pattern;
    int32_t prefix[MAX_POST], suffix[MAX_POST];
    size_t n_prefix, n_suffix;
    uint32_t ovec;              /* capture slots the split regexes need */
    cl_tok_work *work;          /* what cl_tokenizer_encode uses */
};

/* Encoding state: regex match data and JIT stack, the word cache, merge buffers.  Everything an
 * encode writes lives here, so threads each with their own share one tokenizer. */
struct cl_tok_work {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    cache_slot *cache;
    size_t cache_used;
    char *cache_bytes;
    size_t cb_len, cb_cap;
    int32_t *cache_ids;
    size_t ci_len, ci_cap;
    sym *sym;
    heap_ent *heap;
    size_t sym_cap;
    char *scratch;
    size_t scratch_cap;
};

/* Word-at-a-time multiply-mix hash: the word cache and vocabulary lookups hash every
 * pre-token, so this sits on the encoder's hot path (never 0: 0 marks an empty cache slot). */
static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 32;
    return h | 1;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * take code points 256.. in byte order. */
static int32_t byte_code_point(unsigned char b)
{
    int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
    if (printable)
        return b;
    int below = 0; /* non-printable bytes before b */
    for (int c = 0; c < b; c++)
        below += !((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae));
    return 256 + below;
}

size_t cl_byte_text(unsigned char b, char out[2])
{
    return (size_t)utf8proc_encode_char(byte_code_point(b), (utf8proc_uint8_t *)out);
}

static void byte_alphabet_init(cl_tokenizer *t)
{
    for (int i = 0; i < 324; i++)
        t->ub[i] = -1;
    for (int b = 0; b < 256; b++) {
        t->ub[byte_code_point((unsigned char)b)] = (int16_t)b;
        t->bu_len[b] = (uint8_t)cl_byte_text((unsigned char)b, t->bu[b]);
    }
}

static int32_t vmap_get(const cl_tokenizer *t, const char *s, size_t n)
{
    size_t mask = t->vmap_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->vmap[i];
        if (id < 0)
            return -1;
        if (t->tok[id].text_len == n && memcmp(t->tok[id].text, s, n) == 0)
            return id;
    }
}

/* Inserts id under its text; returns the id already there when the text is taken. */
static int32_t vmap_put(cl_tokenizer *t, int32_t id)
{
    size_t mask = t->vmap_cap - 1;
    const tok_entry *k = &t->tok[id];
    for (size_t i = hash_bytes(k->text, k->text_len) & mask;; i = (i + 1) & mask) {
        int32_t o = t->vmap[i];
        if (o < 0) {
            t->vmap[i] = id;
            return id;
        }
        if (t->tok[o].text_len == k->text_len && memcmp(t->tok[o].text, k->text, k->text_len) == 0)
            return o;
    }
}

static const pair_slot *pmap_get(const cl_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = t->pmap_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pmap[i].key == key)
            return &t->pmap[i];
        if (t->pmap[i].key == 0)
            return NULL;
    }
}

/* A later merge of the same pair overrides the earlier one, as the reference's map does. */
static void pmap_put(cl_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t mask = t->pmap_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pmap[i].key == 0 || t->pmap[i].key == key) {
            t->pmap[i] = (pair_slot){key, rank, id};
            return;
        }
    }
}

/* ---- building ------------------------------------------------------------------------ */

/* Decoded bytes of a token text: through the byte alphabet when every character is in it,
 * else the text itself (the reference decoder's fallback). */
static uint32_t token_bytes_of(const cl_tokenizer *t, const char *s, uint32_t n, char *out)
{
    uint32_t o = 0;
    utf8proc_ssize_t i = 0;
    while ((uint32_t)i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, n - i, &cp);
        if (k <= 0 || cp >= 324 || t->ub[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)t->ub[cp];
        i += k;
    }
    return o;
}

typedef struct tok_src {
    const char *s;
    uint32_t len;
    int32_t id;
    uint8_t kind;
} tok_src;

static cl_tokenizer *tokenizer_new(const char *name)
{
    cl_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->name, sizeof t->name, "%s", name);
    byte_alphabet_init(t);
    t->unk = -1;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    return t;
}

/* Lays out the id table from the model vocabulary and added tokens (added ones override the
 * kind of an id they share). */
static int tokens_build(cl_tokenizer *t, const tok_src *src, size_t n_src, cl_err *e)
{
    int32_t n = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < n_src; i++) {
        if (src[i].id >= n)
            n = src[i].id + 1;
        bytes += 2 * (size_t)src[i].len + 2;
    }
    t->n = n;
    t->tok = calloc((size_t)n + 1, sizeof *t->tok);
    t->arena = malloc(bytes + 1);
    t->vmap_cap = pow2_at_least((size_t)n * 2 + 2);
    t->vmap = malloc(t->vmap_cap * sizeof *t->vmap);
    if (!t->tok || !t->arena || !t->vmap)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    memset(t->vmap, 0xff, t->vmap_cap * sizeof *t->vmap);
    char *p = t->arena;
    for (size_t i = 0; i < n_src; i++) {
        tok_entry *k = &t->tok[src[i].id];
        if (k->text) {
            if (src[i].kind == CL_TOKEN_NORMAL)
                return cl_err_set(e, CL_EXIT_DATAERR, "%s: model.vocab: id %d is used twice",
                                  t->name, (int)src[i].id);
            if (k->text_len != src[i].len || memcmp(k->text, src[i].s, src[i].len) != 0)
                return cl_err_set(e, CL_EXIT_DATAERR,
                                  "%s: added_tokens: id %d is \"%s\" in the vocabulary",
                                  t->name, (int)src[i].id, k->text);
            k->kind = src[i].kind;
            continue;
        }
        k->text = p;
        memcpy(p, src[i].s, src[i].len);
        p[src[i].len] = 0;
        k->text_len = src[i].len;
        p += src[i].len + 1;
        k->bytes = p;
        k->len = token_bytes_of(t, k->text, k->text_len, p);
        p += k->len + 1;
        k->kind = src[i].kind;
        if (src[i].kind == CL_TOKEN_NORMAL) {
            int32_t o = vmap_put(t, src[i].id);
            if (o != src[i].id)
                return cl_err_set(e, CL_EXIT_DATAERR,
                                  "%s: model.vocab: \"%s\" has two ids (%d and %d)", t->name,
                                  k->text, (int)o, (int)src[i].id);
            if (k->len == 1 && t->byte_id[(uint8_t)k->bytes[0]] < 0 &&
                k->text_len == t->bu_len[(uint8_t)k->bytes[0]])
                t->byte_id[(uint8_t)k->bytes[0]] = src[i].id;
        }
    }
    return 0;
}

static int added_build(cl_tokenizer *t, cl_err *e)
{
    uint32_t count[257] = {0};
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].len == 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: added_tokens[%zu]: empty content",
                              t->name, i);
        count[(uint8_t)t->added[i].s[0]]++;
    }
    t->by_first = malloc((t->n_added + 1) * sizeof *t->by_first);
    if (!t->by_first)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    uint32_t off = 0;
    for (int b = 0; b < 256; b++) {
        t->first_off[b] = off;
        off += count[b];
    }
    t->first_off[256] = off;
    for (int b = 0; b < 256; b++)
        t->first[b] = t->first_off[b + 1] > t->first_off[b];
    uint32_t fill[256];
    memcpy(fill, t->first_off, sizeof fill);
    for (size_t i = 0; i < t->n_added; i++)
        t->by_first[fill[(uint8_t)t->added[i].s[0]]++] = (uint32_t)i;
    /* Longest first within a bucket, so the first hit is the leftmost-longest match. */
    for (int b = 0; b < 256; b++) {
        uint32_t *v = t->by_first + t->first_off[b];
        uint32_t m = t->first_off[b + 1] - t->first_off[b];
        for (uint32_t i = 1; i < m; i++)
            for (uint32_t j = i; j > 0 && t->added[v[j]].len > t->added[v[j - 1]].len; j--) {
                uint32_t x = v[j];
                v[j] = v[j - 1];
                v[j - 1] = x;
            }
    }
    return 0;
}

static int scratch_reserve(cl_tok_work *w, size_t n)
{
    if (n <= w->scratch_cap)
        return 0;
    size_t cap = pow2_at_least(n);
    char *s = realloc(w->scratch, cap);
    if (!s)
        return -1;
    w->scratch = s;
    w->scratch_cap = cap;
    return 0;
}

void cl_tokenizer_work_free(cl_tok_work *w)
{
    if (!w)
        return;
    pcre2_match_data_free(w->md);
    pcre2_match_context_free(w->mctx);
    pcre2_jit_stack_free(w->jstack);
    free(w->cache);
    free(w->cache_bytes);
    free(w->cache_ids);
    free(w->sym);
    free(w->heap);
    free(w->scratch);
    free(w);
}

cl_tok_work *cl_tokenizer_work_new(const cl_tokenizer *t)
{
    cl_tok_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cache = calloc(CACHE_SLOTS, sizeof *w->cache);
    w->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    w->mctx = pcre2_match_context_create(NULL);
    w->md = pcre2_match_data_create(t->ovec, NULL);
    if (!w->cache || !w->jstack || !w->mctx || !w->md) {
        cl_tokenizer_work_free(w);
        return NULL;
    }
    pcre2_jit_stack_assign(w->mctx, NULL, w->jstack);
    return w;
}

static int finish_build(cl_tokenizer *t, cl_err *e)
{
    t->ovec = 1;
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].re) {
            uint32_t c;
            pcre2_pattern_info(t->steps[i].re, PCRE2_INFO_CAPTURECOUNT, &c);
            if (c + 1 > t->ovec)
                t->ovec = c + 1;
        }
    if (!(t->work = cl_tokenizer_work_new(t)))
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    return added_build(t, e);
}

static int step_add(cl_tokenizer *t, const char *pattern, int literal, int prefix_space,
                    const char *field, cl_err *e)
{
    if (t->n_steps == MAX_STEPS)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: more than %d pre-tokenizers", t->name,
                          field, MAX_STEPS);
    split_step *st = &t->steps[t->n_steps];
    st->prefix_space = (uint8_t)prefix_space;
    if (pattern) {
        int err;
        PCRE2_SIZE off;
        uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP */
        st->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
        if (!st->re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: regex does not compile at %zu: %s",
                              t->name, field, (size_t)off, (char *)msg);
        }
        pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        if (!t->pattern && !literal && !(t->pattern = strdup(pattern)))
            return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    }
    t->n_steps++;
    return 0;
}

void cl_tokenizer_free(cl_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_steps; i++)
        pcre2_code_free(t->steps[i].re);
    cl_tokenizer_work_free(t->work);
    free(t->tok);
    free(t->arena);
    free(t->vmap);
    free(t->pmap);
    free(t->merges);
    free(t->added);
    free(t->by_first);
    free(t->pattern);
    free(t);
}

/* ---- tokenizer.json ------------------------------------------------------------------ */

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static const char *kind_name(jv_kind k) { return jv_kind_name(k); }

/* Field helpers: each returns -1 with a message naming the field when the type is wrong. */
static int want_kind(const cl_tokenizer *t, const jv *v, jv_kind k, const char *field, cl_err *e)
{
    if (jv_get_kind(*v) == k)
        return 0;
    return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: expected %s, found %s", t->name, field,
                      kind_name(k), kind_name(jv_get_kind(*v)));
}

static int flag(const jv *obj, const char *key) { return cl_json_bool(obj, key, 0); }

/* The normalisers tokenizer.json names, as utf8proc options. */
static const struct { const char *name; int opts; } forms[] = {
    {"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
    {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
    {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
    {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT},
};

static int load_normalizer(cl_tokenizer *t, const jv *n, const char *field, cl_err *e)
{
    jv_kind k = jv_get_kind(*n);
    if (k == JV_KIND_NULL || k == JV_KIND_INVALID)
        return 0;
    if (want_kind(t, n, JV_KIND_OBJECT, field, e))
        return -1;
    const char *type = cl_json_str(n, "type");
    for (size_t i = 0; type && i < sizeof forms / sizeof *forms; i++)
        if (strcmp(type, forms[i].name) == 0) {
            if (t->norm_opts && t->norm_opts != forms[i].opts)
                return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: two Unicode normal forms",
                                  t->name, field);
            t->norm_opts = forms[i].opts;
            return 0;
        }
    if (type && strcmp(type, "Sequence") == 0) {
        jv list = cl_json_get(n, "normalizers");
        int rc = want_kind(t, &list, JV_KIND_ARRAY, field, e);
        for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(list)); i++) {
            jv item = jv_array_get(jv_copy(list), i);
            rc = load_normalizer(t, &item, field, e);
            jv_free(item);
        }
        jv_free(list);
        return rc;
    }
    return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: normalizer type %s is not supported",
                      t->name, field, type ? type : "(missing)");
}

static int load_pretok(cl_tokenizer *t, const jv *p, int *bytelevel, cl_err *e)
{
    const char *field = "pre_tokenizer";
    if (want_kind(t, p, JV_KIND_OBJECT, field, e))
        return -1;
    const char *type = cl_json_str(p, "type");
    if (!type)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: no type", t->name, field);
    if (strcmp(type, "Sequence") == 0) {
        jv list = cl_json_get(p, "pretokenizers");
        int rc = want_kind(t, &list, JV_KIND_ARRAY, "pre_tokenizer.pretokenizers", e);
        for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(list)); i++) {
            jv item = jv_array_get(jv_copy(list), i);
            rc = load_pretok(t, &item, bytelevel, e);
            jv_free(item);
        }
        jv_free(list);
        return rc;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        *bytelevel = 1;
        int use_regex = cl_json_bool(p, "use_regex", 1);
        return step_add(t, use_regex ? GPT2_PATTERN : NULL, 0, flag(p, "add_prefix_space"), field, e);
    }
    if (strcmp(type, "Split") == 0) {
        const char *behavior = cl_json_str(p, "behavior");
        if (flag(p, "invert"))
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: Split with invert is not supported",
                              t->name, field);
        /* Isolated is what byte-level tokenizers use; the other behaviours are refused rather
         * than guessed (tokenizers.js keeps Removed delimiters; unconfirmed against Rust). */
        if (!behavior || strcmp(behavior, "Isolated") != 0)
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: Split behavior %s is not supported",
                              t->name, field, behavior ? behavior : "(missing)");
        jv pat = cl_json_get(p, "pattern");
        const char *re = cl_json_str(&pat, "Regex");
        const char *lit = cl_json_str(&pat, "String");
        int rc = re || lit ? step_add(t, re ? re : lit, !re, 0, "pre_tokenizer.pattern", e)
                           : cl_err_set(e, CL_EXIT_DATAERR,
                                        "%s: pre_tokenizer.pattern: neither Regex nor String",
                                        t->name);
        jv_free(pat);
        return rc;
    }
    if (strcmp(type, "Digits") == 0) /* ASCII digits only, as the reference splits them */
        return step_add(t, flag(p, "individual_digits") ? "[0-9]" : "[0-9]+", 0, 0, field, e);
    return cl_err_set(e, CL_EXIT_DATAERR, "%s: %s: pre-tokenizer type %s is not supported",
                      t->name, field, type);
}

static int post_ids(cl_tokenizer *t, const jv *specials, const char *name, int32_t *dst,
                    size_t *n, cl_err *e)
{
    jv sp = cl_json_get(specials, name);
    jv ids = cl_json_get(&sp, "ids");
    int rc = 0;
    if (jv_get_kind(ids) != JV_KIND_ARRAY)
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: post_processor.special_tokens: no ids for %s",
                        t->name, name);
    for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(ids)); i++) {
        jv x = jv_array_get(jv_copy(ids), i);
        double d = jv_get_kind(x) == JV_KIND_NUMBER ? jv_number_value(x) : -1;
        jv_free(x);
        if (d < 0 || d >= t->n || d != (int32_t)d || !t->tok[(int32_t)d].text)
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "%s: post_processor.special_tokens.%s: id out of the vocabulary",
                            t->name, name);
        else if (*n == MAX_POST)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: post_processor: more than %d specials",
                            t->name, MAX_POST);
        else
            dst[(*n)++] = (int32_t)d;
    }
    jv_free(ids);
    jv_free(sp);
    return rc;
}

static int load_post(cl_tokenizer *t, const jv *p, cl_err *e)
{
    jv_kind k = jv_get_kind(*p);
    if (k == JV_KIND_NULL || k == JV_KIND_INVALID)
        return 0;
    if (want_kind(t, p, JV_KIND_OBJECT, "post_processor", e))
        return -1;
    const char *type = cl_json_str(p, "type");
    if (type && strcmp(type, "ByteLevel") == 0)
        return 0; /* offsets only */
    if (type && strcmp(type, "Sequence") == 0) {
        jv list = cl_json_get(p, "processors");
        int rc = want_kind(t, &list, JV_KIND_ARRAY, "post_processor.processors", e);
        for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(list)); i++) {
            jv item = jv_array_get(jv_copy(list), i);
            rc = load_post(t, &item, e);
            jv_free(item);
        }
        jv_free(list);
        return rc;
    }
    if (!type || strcmp(type, "TemplateProcessing") != 0)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: post_processor type %s is not supported",
                          t->name, type ? type : "(missing)");
    jv single = cl_json_get(p, "single");
    jv specials = cl_json_get(p, "special_tokens");
    int rc = want_kind(t, &single, JV_KIND_ARRAY, "post_processor.single", e);
    int seen_seq = 0;
    for (int i = 0; rc == 0 && i < jv_array_length(jv_copy(single)); i++) {
        jv item = jv_array_get(jv_copy(single), i);
        jv st = cl_json_get(&item, "SpecialToken");
        if (jv_get_kind(st) == JV_KIND_OBJECT) {
            const char *id = cl_json_str(&st, "id");
            rc = !id ? cl_err_set(e, CL_EXIT_DATAERR, "%s: post_processor.single[%d]: no id",
                                  t->name, i)
                     : seen_seq ? post_ids(t, &specials, id, t->suffix, &t->n_suffix, e)
                                : post_ids(t, &specials, id, t->prefix, &t->n_prefix, e);
        } else if (cl_json_has(&item, "Sequence")) {
            seen_seq = 1;
        } else {
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: post_processor.single[%d]: unknown piece",
                            t->name, i);
        }
        jv_free(st);
        jv_free(item);
    }
    jv_free(single);
    jv_free(specials);
    return rc;
}

/* Splits a merge "a b" or ["a","b"] into its two halves. */
static int merge_halves(const cl_tokenizer *t, jv m, size_t i, const char **a, size_t *alen,
                        const char **b, size_t *blen, char *buf, size_t bufsz, cl_err *e)
{
    int rc = 0;
    if (jv_get_kind(m) == JV_KIND_STRING) {
        const char *s = jv_string_value(m);
        size_t n = (size_t)jv_string_length_bytes(jv_copy(m));
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)) || n >= bufsz)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.merges[%zu]: not \"a b\"", t->name, i);
        else {
            memcpy(buf, s, n);
            *a = buf;
            *alen = (size_t)(sp - s);
            *b = buf + *alen + 1;
            *blen = n - *alen - 1;
        }
    } else if (jv_get_kind(m) == JV_KIND_ARRAY && jv_array_length(jv_copy(m)) == 2) {
        jv x = jv_array_get(jv_copy(m), 0), y = jv_array_get(jv_copy(m), 1);
        if (jv_get_kind(x) != JV_KIND_STRING || jv_get_kind(y) != JV_KIND_STRING)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.merges[%zu]: not two strings",
                            t->name, i);
        else {
            size_t xn = (size_t)jv_string_length_bytes(jv_copy(x));
            size_t yn = (size_t)jv_string_length_bytes(jv_copy(y));
            if (xn + yn + 1 >= bufsz)
                rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.merges[%zu]: too long", t->name, i);
            else {
                memcpy(buf, jv_string_value(x), xn);
                memcpy(buf + xn + 1, jv_string_value(y), yn);
                *a = buf;
                *alen = xn;
                *b = buf + xn + 1;
                *blen = yn;
            }
        }
        jv_free(x);
        jv_free(y);
    } else {
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.merges[%zu]: expected \"a b\" or [a, b]",
                        t->name, i);
    }
    jv_free(m);
    return rc;
}

static int load_merges(cl_tokenizer *t, const jv *merges, cl_err *e)
{
    if (want_kind(t, merges, JV_KIND_ARRAY, "model.merges", e))
        return -1;
    size_t n = (size_t)jv_array_length(jv_copy(*merges));
    t->pmap_cap = pow2_at_least(n * 2 + 2);
    t->pmap = calloc(t->pmap_cap, sizeof *t->pmap);
    t->merges = malloc((n + 1) * sizeof *t->merges);
    if (!t->pmap || !t->merges)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    char buf[2048], cat[2048];
    for (size_t i = 0; i < n; i++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (merge_halves(t, jv_array_get(jv_copy(*merges), (int)i), i, &a, &al, &b, &bl, buf,
                         sizeof buf, e))
            return -1;
        int32_t ia = vmap_get(t, a, al), ib = vmap_get(t, b, bl);
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        int32_t ic = vmap_get(t, cat, al + bl);
        if (ia < 0 || ib < 0 || ic < 0)
            return cl_err_set(e, CL_EXIT_DATAERR,
                              "%s: model.merges[%zu]: \"%.*s\" + \"%.*s\" is not in the vocabulary",
                              t->name, i, (int)al, a, (int)bl, b);
        pmap_put(t, ia, ib, (uint32_t)i, ic);
        t->merges[i][0] = ia;
        t->merges[i][1] = ib;
    }
    t->n_merges = n;
    return 0;
}

static int load_model_vocab(cl_tokenizer *t, const jv *root, cl_err *e)
{
    jv model = cl_json_get(root, "model");
    jv vocab = cl_json_get(&model, "vocab");
    jv added = cl_json_get(root, "added_tokens");
    tok_src *src = NULL;
    int rc = want_kind(t, &model, JV_KIND_OBJECT, "model", e);
    if (rc == 0) {
        const char *type = cl_json_str(&model, "type");
        if (!type || strcmp(type, "BPE") != 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.type: %s is not supported (BPE only)",
                            t->name, type ? type : "(missing)");
        else if (flag(&model, "byte_fallback"))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.byte_fallback is not supported",
                            t->name);
        else if ((cl_json_str(&model, "continuing_subword_prefix") &&
                  *cl_json_str(&model, "continuing_subword_prefix")) ||
                 (cl_json_str(&model, "end_of_word_suffix") &&
                  *cl_json_str(&model, "end_of_word_suffix")))
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model: subword prefixes are not supported",
                            t->name);
        else if (cl_json_kind(&model, "dropout") == JV_KIND_NUMBER &&
                 cl_json_num(&model, "dropout", 0) != 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.dropout is not supported", t->name);
    }
    if (rc == 0)
        rc = want_kind(t, &vocab, JV_KIND_OBJECT, "model.vocab", e);
    if (rc == 0 && jv_get_kind(added) != JV_KIND_NULL && jv_get_kind(added) != JV_KIND_INVALID)
        rc = want_kind(t, &added, JV_KIND_ARRAY, "added_tokens", e);
    size_t nv = rc ? 0 : (size_t)jv_object_length(jv_copy(vocab));
    size_t na = rc || jv_get_kind(added) != JV_KIND_ARRAY ? 0
                                                         : (size_t)jv_array_length(jv_copy(added));
    if (rc == 0 && !(src = calloc(nv + na + 1, sizeof *src)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    size_t ns = 0;
    if (rc == 0) {
        int it = jv_object_iter(vocab);
        for (; jv_object_iter_valid(vocab, it) && rc == 0; it = jv_object_iter_next(vocab, it)) {
            jv key = jv_object_iter_key(vocab, it);
            jv val = jv_object_iter_value(vocab, it);
            double d = jv_get_kind(val) == JV_KIND_NUMBER ? jv_number_value(val) : -1;
            if (d < 0 || d >= (1 << 24) || d != (int32_t)d)
                rc = cl_err_set(e, CL_EXIT_DATAERR,
                                "%s: model.vocab[\"%.40s\"]: id must be an integer in 0..16777215",
                                t->name, jv_string_value(key));
            else
                src[ns++] = (tok_src){jv_string_value(key),
                                      (uint32_t)jv_string_length_bytes(jv_copy(key)), (int32_t)d,
                                      CL_TOKEN_NORMAL};
            /* jq keeps object keys alive while the object lives: the pointer stays valid. */
            jv_free(key);
            jv_free(val);
        }
    }
    if (rc == 0 && na && !(t->added = calloc(na, sizeof *t->added)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    for (size_t i = 0; rc == 0 && i < na; i++) {
        jv a = jv_array_get(jv_copy(added), (int)i);
        const char *content = cl_json_str(&a, "content");
        double d = cl_json_num(&a, "id", -1);
        if (!content || d < 0 || d >= (1 << 24) || d != (int32_t)d)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: added_tokens[%zu]: needs content and id",
                            t->name, i);
        else {
            jv c = cl_json_get(&a, "content");
            uint32_t len = (uint32_t)jv_string_length_bytes(c);
            int special = flag(&a, "special");
            src[ns++] = (tok_src){content, len, (int32_t)d,
                                  (uint8_t)(special ? CL_TOKEN_SPECIAL : CL_TOKEN_ADDED)};
            t->added[i] = (added_tok){(int32_t)d, len, NULL, (uint8_t)flag(&a, "lstrip"),
                                      (uint8_t)flag(&a, "rstrip"), (uint8_t)flag(&a, "single_word"),
                                      (uint8_t)flag(&a, "normalized"), (uint8_t)special};
        }
        jv_free(a);
    }
    t->n_added = rc ? 0 : na;
    if (rc == 0)
        rc = tokens_build(t, src, ns, e);
    for (size_t i = 0; rc == 0 && i < t->n_added; i++)
        t->added[i].s = t->tok[t->added[i].id].text;
    if (rc == 0) {
        jv merges = cl_json_get(&model, "merges");
        rc = load_merges(t, &merges, e);
        jv_free(merges);
    }
    if (rc == 0) {
        t->ignore_merges = flag(&model, "ignore_merges");
        const char *unk = cl_json_str(&model, "unk_token");
        if (unk && (t->unk = vmap_get(t, unk, strlen(unk))) < 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: model.unk_token: \"%s\" is not in the vocabulary",
                            t->name, unk);
    }
    free(src);
    jv_free(model);
    jv_free(vocab);
    jv_free(added);
    return rc;
}

cl_tokenizer *cl_tokenizer_from_json(const char *buf, size_t len, const char *name, cl_err *e)
{
    cl_json_check chk;
    if (cl_json_validate(buf, len, &chk) != 0) {
        cl_err_set(e, CL_EXIT_DATAERR, "%s: byte %zu: %s", name, chk.err_off, chk.err_what);
        return NULL;
    }
    cl_tokenizer *t = tokenizer_new(name);
    if (!t) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", name);
        return NULL;
    }
    jv root = cl_json_parse(buf, len);
    int rc = 0;
    if (!jv_is_valid(root))
        rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: not JSON", name);
    else
        rc = want_kind(t, &root, JV_KIND_OBJECT, "top level", e);
    if (rc == 0)
        rc = load_model_vocab(t, &root, e);
    int bytelevel = 0;
    if (rc == 0) {
        jv n = cl_json_get(&root, "normalizer");
        rc = load_normalizer(t, &n, "normalizer", e);
        jv_free(n);
    }
    if (rc == 0) {
        jv p = cl_json_get(&root, "pre_tokenizer");
        rc = load_pretok(t, &p, &bytelevel, e);
        jv_free(p);
        if (rc == 0 && !bytelevel)
            rc = cl_err_set(e, CL_EXIT_DATAERR,
                            "%s: pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)",
                            name);
    }
    if (rc == 0) {
        jv d = cl_json_get(&root, "decoder");
        const char *type = cl_json_str(&d, "type");
        if (!type || strcmp(type, "ByteLevel") != 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: decoder: %s is not supported (ByteLevel only)",
                            name, type ? type : "(missing)");
        jv_free(d);
    }
    if (rc == 0) {
        jv p = cl_json_get(&root, "post_processor");
        rc = load_post(t, &p, e);
        jv_free(p);
    }
    jv_free(root);
    if (rc == 0)
        rc = finish_build(t, e);
    if (rc) {
        cl_tokenizer_free(t);
        return NULL;
    }
    return t;
}

cl_tokenizer *cl_tokenizer_load(const char *path, cl_err *e)
{
    size_t n;
    char *buf = cl_file_read(path, &n, e);
    if (!buf)
        return NULL;
    cl_tokenizer *t = cl_tokenizer_from_json(buf, n, path, e);
    free(buf);
    return t;
}

/* ---- tiktoken ------------------------------------------------------------------------ */

#define CL100K_PATTERN                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard padded base64; returns the byte count or -1. */
static long b64decode(const char *s, size_t n, unsigned char *out)
{
    if (n == 0 || n % 4)
        return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? -2 : b64val((unsigned char)s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] == -1 || v[3] == -1 || (v[2] == -2 && v[3] != -2))
            return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[3] >= 0)
            out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return o;
}

static int tiktoken_parse(cl_tokenizer *t, const char *buf, size_t len, tok_src **srcp,
                          size_t *nsrc, char **textp, cl_err *e)
{
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    lines++;
    tok_src *src = calloc(lines, sizeof *src);
    char *text = malloc(len * 3 + 16); /* each byte maps to at most 2 UTF-8 bytes */
    *srcp = src;
    *textp = text;
    if (!src || !text)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    size_t ns = 0, line = 0;
    char *tp = text;
    for (const char *p = buf, *end = buf + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) {
            p = nl ? nl + 1 : end;
            continue;
        }
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        unsigned char raw[1024];
        long nb = sp && (size_t)(sp - p) <= 4 * sizeof raw / 3 ? b64decode(p, (size_t)(sp - p), raw)
                                                                : -1;
        /* The buffer is not NUL-terminated: parse the rank by hand within the line. */
        long rank = sp && sp + 1 < le ? 0 : -1;
        for (const char *q = sp ? sp + 1 : le; q < le && rank >= 0; q++)
            rank = *q >= '0' && *q <= '9' && rank < (1 << 24) ? rank * 10 + (*q - '0') : -1;
        if (nb <= 0 || rank < 0 || rank >= (1 << 24))
            return cl_err_set(e, CL_EXIT_DATAERR, "%s:%zu: expected \"<base64 token> <rank>\"",
                              t->name, line);
        src[ns] = (tok_src){tp, 0, (int32_t)rank, CL_TOKEN_NORMAL};
        for (long i = 0; i < nb; i++) {
            memcpy(tp, t->bu[raw[i]], t->bu_len[raw[i]]);
            tp += t->bu_len[raw[i]];
        }
        src[ns].len = (uint32_t)(tp - src[ns].s);
        ns++;
        p = nl ? nl + 1 : end;
    }
    *nsrc = ns;
    return 0;
}

/* Every split of a token into two tokens merges at the token's rank: that is tiktoken's rule
 * (merge the adjacent pair whose concatenation ranks lowest). */
static int tiktoken_merges(cl_tokenizer *t, cl_err *e)
{
    size_t pairs = 0;
    for (int32_t id = 0; id < t->n; id++)
        if (t->tok[id].kind == CL_TOKEN_NORMAL && t->tok[id].len > 1)
            pairs += t->tok[id].len - 1;
    t->pmap_cap = pow2_at_least(pairs * 2 + 2);
    t->pmap = calloc(t->pmap_cap, sizeof *t->pmap);
    t->merges = malloc((pairs + 1) * sizeof *t->merges);
    if (!t->pmap || !t->merges)
        return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
    for (int32_t id = 0; id < t->n; id++) {
        const tok_entry *k = &t->tok[id];
        if (k->kind != CL_TOKEN_NORMAL || k->len < 2)
            continue;
        uint32_t cut = 0;
        for (uint32_t i = 0; i + 1 < k->len; i++) {
            cut += t->bu_len[(uint8_t)k->bytes[i]];
            int32_t a = vmap_get(t, k->text, cut);
            int32_t b = a < 0 ? -1 : vmap_get(t, k->text + cut, k->text_len - cut);
            if (a < 0 || b < 0 || pmap_get(t, a, b))
                continue;
            pmap_put(t, a, b, (uint32_t)id, id);
            t->merges[t->n_merges][0] = a;
            t->merges[t->n_merges][1] = b;
            t->n_merges++;
        }
    }
    return 0;
}

cl_tokenizer *cl_tokenizer_load_tiktoken(const char *path, const char *pattern,
                                         const char *const *special_names,
                                         const int32_t *special_ids, size_t n_special, cl_err *e)
{
    size_t len;
    char *buf = cl_file_read(path, &len, e);
    if (!buf)
        return NULL;
    cl_tokenizer *t = cl_tokenizer_from_tiktoken(buf, len, path, pattern, special_names,
                                                 special_ids, n_special, e);
    free(buf);
    return t;
}

cl_tokenizer *cl_tokenizer_from_tiktoken(const char *buf, size_t len, const char *path,
                                         const char *pattern, const char *const *special_names,
                                         const int32_t *special_ids, size_t n_special, cl_err *e)
{
    cl_tokenizer *t = tokenizer_new(path);
    tok_src *src = NULL;
    char *text = NULL;
    size_t ns = 0;
    int rc = t ? tiktoken_parse(t, buf, len, &src, &ns, &text, e)
               : cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
    tok_src *all = rc ? NULL : realloc(src, (ns + n_special + 1) * sizeof *src);
    if (rc == 0 && !all)
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
    if (all)
        src = all;
    if (rc == 0 && n_special && !(t->added = calloc(n_special, sizeof *t->added)))
        rc = cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", path);
    for (size_t i = 0; rc == 0 && i < n_special; i++) {
        if (special_ids[i] < 0 || special_ids[i] >= (1 << 24))
            rc = cl_err_set(e, CL_EXIT_USAGE, "%s: special token id %d out of range", path,
                            (int)special_ids[i]);
        src[ns++] = (tok_src){special_names[i], (uint32_t)strlen(special_names[i]), special_ids[i],
                              CL_TOKEN_SPECIAL};
        t->added[i] = (added_tok){special_ids[i], (uint32_t)strlen(special_names[i]), NULL, 0, 0, 0,
                                  0, 1};
    }
    if (rc == 0) {
        t->n_added = n_special;
        rc = tokens_build(t, src, ns, e);
    }
    for (size_t i = 0; rc == 0 && i < t->n_added; i++)
        t->added[i].s = t->tok[t->added[i].id].text;
    for (int b = 0; rc == 0 && b < 256; b++)
        if (t->byte_id[b] < 0)
            rc = cl_err_set(e, CL_EXIT_DATAERR, "%s: byte 0x%02x has no token", path, b);
    if (rc == 0)
        rc = tiktoken_merges(t, e);
    if (rc == 0) {
        t->ignore_merges = 1;
        rc = step_add(t, pattern ? pattern : CL100K_PATTERN, 0, 0, "pattern", e);
    }
    if (rc == 0)
        rc = finish_build(t, e);
    free(src);
    free(text);
    if (rc) {
        cl_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ---- encoding ------------------------------------------------------------------------ */

static int oom(const cl_tokenizer *t, cl_err *e)
{
    return cl_err_set(e, CL_EXIT_SOFTWARE, "%s: out of memory", t->name);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < x.rank || (h[p].rank == x.rank && h[p].pos < x.pos))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_ent heap_pop(heap_ent *h, size_t *n)
{
    heap_ent top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && (h[c + 1].rank < h[c].rank ||
                           (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos)))
            c++;
        if (x.rank < h[c].rank || (x.rank == h[c].rank && x.pos < h[c].pos))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static void push_pair(const cl_tokenizer *t, cl_tok_work *w, size_t *nh, int32_t left)
{
    if (left < 0)
        return;
    int32_t right = w->sym[left].next;
    if (right < 0)
        return;
    const pair_slot *p = pmap_get(t, w->sym[left].id, w->sym[right].id);
    if (p)
        heap_push(w->heap, nh, (heap_ent){p->rank, (uint32_t)left, p->id});
}

/* Merges the bytes of one pre-token by rank, lowest first and leftmost on ties. */
static int bpe_merge(const cl_tokenizer *t, cl_tok_work *w, const unsigned char *s, size_t n,
                     cl_ids *out, cl_err *e)
{
    if (n > w->sym_cap) {
        size_t cap = pow2_at_least(n);
        sym *ns = realloc(w->sym, cap * sizeof *ns);
        if (ns)
            w->sym = ns;
        /* Each merge pops one candidate and pushes up to two: at most 2n live entries. */
        heap_ent *nh = ns ? realloc(w->heap, 2 * cap * sizeof *nh) : NULL;
        if (!nh)
            return oom(t, e);
        w->heap = nh;
        w->sym_cap = cap;
    }
    int32_t m = 0, last = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0)
            id = t->unk;
        if (id < 0)
            continue; /* the reference drops bytes it has no token for */
        w->sym[m] = (sym){id, last, -1};
        if (last >= 0)
            w->sym[last].next = m;
        last = m++;
    }
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        push_pair(t, w, &nh, i);
    while (nh) {
        heap_ent h = heap_pop(w->heap, &nh);
        sym *l = &w->sym[h.pos];
        if (l->id < 0 || l->next < 0)
            continue;
        const pair_slot *p = pmap_get(t, l->id, w->sym[l->next].id);
        if (!p || p->id != h.id || p->rank != h.rank)
            continue;
        int32_t r = l->next;
        l->id = h.id;
        l->next = w->sym[r].next;
        if (l->next >= 0)
            w->sym[l->next].prev = (int32_t)h.pos;
        w->sym[r].id = -1;
        push_pair(t, w, &nh, l->prev);
        push_pair(t, w, &nh, (int32_t)h.pos);
    }
    for (int32_t i = m ? 0 : -1; i >= 0; i = w->sym[i].next)
        if (cl_ids_push(out, w->sym[i].id))
            return oom(t, e);
    return 0;
}

static cache_slot *cache_find(cl_tok_work *w, const char *s, size_t n, uint64_t h)
{
    size_t mask = CACHE_SLOTS - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        cache_slot *c = &w->cache[i];
        if (c->h == 0 || (c->h == h && c->len == n && memcmp(w->cache_bytes + c->off, s, n) == 0))
            return c;
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = pow2_at_least(need);
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int bpe_word(const cl_tokenizer *t, cl_tok_work *w, const char *s, size_t n, cl_ids *out,
                    cl_err *e)
{
    if (n == 0)
        return 0;
    uint64_t h = 0;
    cache_slot *c = NULL;
    if (n <= CACHE_WORD_MAX) {
        h = hash_bytes(s, n);
        c = cache_find(w, s, n, h);
        if (c->h) {
            for (uint32_t i = 0; i < c->n; i++)
                if (cl_ids_push(out, w->cache_ids[c->ids + i]))
                    return oom(t, e);
            return 0;
        }
    }
    size_t before = out->n;
    int32_t whole = -1;
    if (t->ignore_merges) {
        if (scratch_reserve(w, 2 * n + 1))
            return oom(t, e);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(w->scratch + k, t->bu[(uint8_t)s[i]], t->bu_len[(uint8_t)s[i]]);
            k += t->bu_len[(uint8_t)s[i]];
        }
        whole = vmap_get(t, w->scratch, k);
    }
    if (whole >= 0 ? cl_ids_push(out, whole) ? oom(t, e) : 0
                   : bpe_merge(t, w, (const unsigned char *)s, n, out, e))
        return -1;
    if (!c)
        return 0;
    if (w->cache_used * 4 >= CACHE_SLOTS * 3) {
        memset(w->cache, 0, CACHE_SLOTS * sizeof *w->cache);
        w->cache_used = w->cb_len = w->ci_len = 0;
        c = cache_find(w, s, n, h);
    }
    size_t nids = out->n - before;
    if (grow((void **)&w->cache_bytes, &w->cb_cap, w->cb_len + n, 1) ||
        grow((void **)&w->cache_ids, &w->ci_cap, w->ci_len + nids, sizeof(int32_t)))
        return 0; /* the cache is an optimisation: a full one just stops caching */
    memcpy(w->cache_bytes + w->cb_len, s, n);
    memcpy(w->cache_ids + w->ci_len, out->v + before, nids * sizeof(int32_t));
    *c = (cache_slot){h, (uint32_t)w->cb_len, (uint32_t)n, (uint32_t)w->ci_len, (uint32_t)nids};
    w->cb_len += n;
    w->ci_len += nids;
    w->cache_used++;
    return 0;
}

/* Where pre-tokens go: merged into ids, or handed to a caller that counts words. */
typedef struct sink {
    cl_tok_work *w;
    cl_ids *out;
    int (*word)(void *ctx, const char *s, size_t n);
    void *ctx;
} sink;

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; }

static int pretok(const cl_tokenizer *t, const char *s, size_t n, int step, sink *out, cl_err *e);

static int split_run(const cl_tokenizer *t, const split_step *st, const char *s, size_t n, int step,
                     sink *out, cl_err *e)
{
    size_t pos = 0, gap = 0;
    while (pos < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, out->w->md, out->w->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return cl_err_set(e, CL_EXIT_DATAERR, "%s: pre-tokenizer regex failed: %s", t->name,
                              (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(out->w->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing */
            pos = ms + utf8_len((unsigned char)s[ms]);
            continue;
        }
        if (ms > gap && pretok(t, s + gap, ms - gap, step + 1, out, e))
            return -1;
        if (pretok(t, s + ms, me - ms, step + 1, out, e))
            return -1;
        gap = pos = me;
    }
    return n > gap ? pretok(t, s + gap, n - gap, step + 1, out, e) : 0;
}

static int pretok(const cl_tokenizer *t, const char *s, size_t n, int step, sink *out, cl_err *e)
{
    if (step == t->n_steps) {
        if (!out->word)
            return bpe_word(t, out->w, s, n, out->out, e);
        return out->word(out->ctx, s, n) ? cl_err_set(e, CL_EXIT_SOFTWARE, "%s: word callback failed", t->name) : 0;
    }
    const split_step *st = &t->steps[step];
    char *own = NULL;
    if (st->prefix_space && n && s[0] != ' ') {
        if (!(own = malloc(n + 1)))
            return oom(t, e);
        own[0] = ' ';
        memcpy(own + 1, s, n);
        s = own;
        n++;
    }
    int rc = st->re ? split_run(t, st, s, n, step, out, e) : pretok(t, s, n, step + 1, out, e);
    free(own);
    return rc;
}

int cl_unicode_is_space(int32_t c)
{
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static int is_word_cp(int32_t c)
{
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* The code point that ends at s[end] (exclusive), scanning back from a valid UTF-8 text. */
static int32_t cp_before(const char *s, size_t end, size_t *start)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    utf8proc_int32_t c;
    utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(end - i), &c);
    *start = i;
    return c;
}

/* Finds the next added token (of the given normalisation pass) at or after `from`: leftmost,
 * longest there, with single_word, lstrip (not before `from`) and rstrip applied. */
static int next_added(const cl_tokenizer *t, const char *s, size_t n, size_t from, int normalized,
                      size_t *ms, size_t *me, int32_t *id)
{
    for (size_t i = from; i < n; i++) {
        while (i < n && !t->first[(uint8_t)s[i]])
            i++;
        if (i == n)
            break;
        uint8_t b = (uint8_t)s[i];
        const added_tok *hit = NULL;
        for (uint32_t k = t->first_off[b]; k < t->first_off[b + 1]; k++) {
            const added_tok *a = &t->added[t->by_first[k]];
            if (a->normalized == normalized && a->len <= n - i && memcmp(s + i, a->s, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit)
            continue;
        size_t start = i, stop = i + hit->len, at;
        if (hit->single_word) {
            utf8proc_int32_t c = 0;
            int before = start > 0 && is_word_cp(cp_before(s, start, &at));
            int after = stop < n && utf8proc_iterate((const utf8proc_uint8_t *)s + stop,
                                                      (utf8proc_ssize_t)(n - stop), &c) > 0 &&
                        is_word_cp(c);
            if (before || after) {
                i = stop - 1;
                continue;
            }
        }
        if (hit->lstrip)
            while (start > from && cl_unicode_is_space(cp_before(s, start, &at)))
                start = at;
        if (hit->rstrip)
            while (stop < n) {
                utf8proc_int32_t c;
                utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + stop,
                                                      (utf8proc_ssize_t)(n - stop), &c);
                if (k <= 0 || !cl_unicode_is_space(c))
                    break;
                stop += (size_t)k;
            }
        *ms = start;
        *me = stop;
        *id = hit->id;
        return 1;
    }
    return 0;
}

/* Splits s on added tokens of one pass and hands the text between them to `then`. */
static int split_added(const cl_tokenizer *t, const char *s, size_t n, int normalized,
                       int (*then)(const cl_tokenizer *, const char *, size_t, sink *, cl_err *),
                       sink *out, cl_err *e)
{
    size_t pos = 0, ms, me;
    int32_t id;
    while (t->n_added && next_added(t, s, n, pos, normalized, &ms, &me, &id)) {
        if (ms > pos && then(t, s + pos, ms - pos, out, e))
            return -1;
        if (!out->word && cl_ids_push(out->out, id))
            return oom(t, e);
        pos = me;
    }
    return n > pos ? then(t, s + pos, n - pos, out, e) : 0;
}

static int pretok0(const cl_tokenizer *t, const char *s, size_t n, sink *out, cl_err *e)
{
    return pretok(t, s, n, 0, out, e);
}

/* Whether normalising leaves a text of such code points unchanged, decided per code point (the
 * quick check of UAX #15: NF*_QC = Yes and combining class 0): no combining class, no way to
 * compose with what precedes it (utf8proc marks the second halves of composition pairs with
 * comb_index at or above 0x8000; Hangul vowel and trailing jamo compose by rule, not by table),
 * and no decomposition the form applies, except, for NFC and NFKC, one that composes back to
 * the code point itself (é, most precomposed letters), which a one-character map tells. */
static int nf_stable(utf8proc_int32_t c, int opts)
{
    if (c >= 0x1160 && c <= 0x11FF) return 0;
    if (c >= 0xAC00 && c <= 0xD7A3) return (opts & UTF8PROC_COMPOSE) != 0; /* decomposed by rule */
    const utf8proc_property_t *p = utf8proc_get_property(c);
    if (p->combining_class != 0 || (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000)) return 0;
    if (p->decomp_seqindex == UINT16_MAX || (p->decomp_type != 0 && !(opts & UTF8PROC_COMPAT))) return 1;
    if (!(opts & UTF8PROC_COMPOSE)) return 0;
    utf8proc_uint8_t one[4], *back = NULL;
    utf8proc_ssize_t n = utf8proc_encode_char(c, one), k = utf8proc_map(one, n, &back, (utf8proc_option_t)opts);
    int same = k == n && memcmp(back, one, (size_t)n) == 0;
    free(back);
    return same;
}

/* s[from..n) already in the normaliser's form (s[0..from) is ASCII, in every form): most text
 * is (English with a curly quote, or NFC text of any script), and then needs no copy. */
static int already_normal(const char *s, size_t n, size_t from, int opts)
{
    size_t i = from;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0 || !nf_stable(c, opts)) return 0;
        i += (size_t)k;
    }
    return 1;
}

int cl_unicode_nf_stable(const char *form, int32_t cp)
{
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++)
        if (strcmp(form, forms[i].name) == 0) return nf_stable(cp, forms[i].opts);
    return -1;
}

static int segment(const cl_tokenizer *t, const char *s, size_t n, sink *out, cl_err *e)
{
    size_t ascii = 0;
    while (ascii < n && (unsigned char)s[ascii] < 0x80)
        ascii++;
    if (!t->norm_opts || ascii == n || already_normal(s, n, ascii, t->norm_opts))
        return split_added(t, s, n, 1, pretok0, out, e);
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &norm,
                                      (utf8proc_option_t)t->norm_opts);
    if (k < 0)
        return cl_err_set(e, CL_EXIT_DATAERR, "%s: normalisation failed: %s", t->name,
                          utf8proc_errmsg(k));
    int rc = split_added(t, (const char *)norm, (size_t)k, 1, pretok0, out, e);
    free(norm);
    return rc;
}

static size_t utf8_invalid_at(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0)
            return i;
        i += (size_t)k;
    }
    return n;
}

int cl_tokenizer_encode_with(const cl_tokenizer *t, cl_tok_work *w, const char *text, size_t len,
                             int add_special, cl_ids *out, cl_err *e)
{
    size_t bad = utf8_invalid_at(text, len);
    if (bad < len)
        return cl_err_set(e, CL_EXIT_DATAERR, "text to encode: byte %zu: invalid UTF-8", bad);
    for (size_t i = 0; add_special && i < t->n_prefix; i++)
        if (cl_ids_push(out, t->prefix[i]))
            return oom(t, e);
    sink sk = {w, out, NULL, NULL};
    if (split_added(t, text, len, 0, segment, &sk, e))
        return -1;
    for (size_t i = 0; add_special && i < t->n_suffix; i++)
        if (cl_ids_push(out, t->suffix[i]))
            return oom(t, e);
    return 0;
}

int cl_tokenizer_encode(cl_tokenizer *t, const char *text, size_t len, int add_special,
                        cl_ids *out, cl_err *e)
{
    return cl_tokenizer_encode_with(t, t->work, text, len, add_special, out, e);
}

int cl_tokenizer_pretokenize(cl_tokenizer *t, const char *text, size_t len,
                             int (*word)(void *ctx, const char *s, size_t n), void *ctx, cl_err *e)
{
    size_t bad = utf8_invalid_at(text, len);
    if (bad < len)
        return cl_err_set(e, CL_EXIT_DATAERR, "text: byte %zu: invalid UTF-8", bad);
    sink sk = {t->work, NULL, word, ctx};
    return split_added(t, text, len, 0, segment, &sk, e);
}

/* ---- decoding and lookups ------------------------------------------------------------ */

char *cl_tokenizer_decode(const cl_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                          size_t *len, cl_err *e)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n || !t->tok[ids[i]].text) {
            cl_err_set(e, CL_EXIT_DATAERR, "%s: token id %ld is not in the vocabulary", t->name,
                       (long)ids[i]);
            return NULL;
        }
        total += t->tok[ids[i]].len;
    }
    char *buf = malloc(total + 1), *p = buf;
    if (!buf) {
        oom(t, e);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const tok_entry *k = &t->tok[ids[i]];
        if (skip_special && k->kind == CL_TOKEN_SPECIAL)
            continue;
        memcpy(p, k->bytes, k->len);
        p += k->len;
    }
    *p = 0;
    if (len)
        *len = (size_t)(p - buf);
    return buf;
}

int32_t cl_tokenizer_vocab_size(const cl_tokenizer *t) { return t->n; }

int32_t cl_tokenizer_token_id(const cl_tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].s, token, n) == 0)
            return t->added[i].id;
    return vmap_get(t, token, n);
}

const char *cl_tokenizer_token_text(const cl_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n ? t->tok[id].text : NULL;
}

const char *cl_tokenizer_token_bytes(const cl_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n || !t->tok[id].text)
        return NULL;
    *len = t->tok[id].len;
    return t->tok[id].bytes;
}

enum cl_token_kind cl_tokenizer_token_kind(const cl_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n ? (enum cl_token_kind)t->tok[id].kind : CL_TOKEN_UNUSED;
}

const int32_t (*cl_tokenizer_merges(const cl_tokenizer *t, size_t *n))[2]
{
    *n = t->n_merges;
    return (const int32_t(*)[2])t->merges;
}

const int32_t *cl_tokenizer_prefix(const cl_tokenizer *t, size_t *n)
{
    *n = t->n_prefix;
    return t->prefix;
}

const int32_t *cl_tokenizer_suffix(const cl_tokenizer *t, size_t *n)
{
    *n = t->n_suffix;
    return t->suffix;
}

const char *cl_tokenizer_pattern(const cl_tokenizer *t) { return t->pattern; }
