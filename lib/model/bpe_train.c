/* bpe_train.c — byte-level BPE training (see bpe_train.h). */
#include "model/bpe_train.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/tokenizer.h"

#define LLAMA3_PATTERN                                                                      \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Distinct words with their counts; symbols are token ids, rewritten as merges apply. */
typedef struct word {
    uint64_t h;
    uint32_t off, len;  /* bytes in the arena */
    uint64_t count;
    int32_t *sym;
    uint32_t nsym;
} word;

typedef struct trainer {
    word *w;
    size_t nw, cap;     /* open addressing over cap slots */
    char *arena;
    size_t alen, acap;
    int failed;
} trainer;

static size_t grow_cap(size_t need)
{
    size_t c = 64;
    while (c < need)
        c <<= 1;
    return c;
}

static int count_word(void *ctx, const char *s, size_t n)
{
    trainer *tr = ctx;
    if (tr->nw * 2 >= tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 1024;
        word *nw = calloc(cap, sizeof *nw);
        if (!nw)
            return -1;
        for (size_t i = 0; i < tr->cap; i++)
            if (tr->w[i].h) {
                size_t j = tr->w[i].h & (cap - 1);
                while (nw[j].h)
                    j = (j + 1) & (cap - 1);
                nw[j] = tr->w[i];
            }
        free(tr->w);
        tr->w = nw;
        tr->cap = cap;
    }
    uint64_t h = cl_hash64(s, n, 0) | 1;
    size_t j = h & (tr->cap - 1);
    for (; tr->w[j].h; j = (j + 1) & (tr->cap - 1))
        if (tr->w[j].h == h && tr->w[j].len == n && memcmp(tr->arena + tr->w[j].off, s, n) == 0) {
            tr->w[j].count++;
            return 0;
        }
    if (tr->alen + n > tr->acap) {
        size_t cap = grow_cap(tr->alen + n);
        char *a = realloc(tr->arena, cap);
        if (!a)
            return -1;
        tr->arena = a;
        tr->acap = cap;
    }
    memcpy(tr->arena + tr->alen, s, n);
    tr->w[j] = (word){h, (uint32_t)tr->alen, (uint32_t)n, 1, NULL, 0};
    tr->alen += n;
    tr->nw++;
    return 0;
}

typedef struct pair_count {
    uint64_t key;       /* (a << 32 | b) + 1; 0 empty */
    uint64_t count;
} pair_count;

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

/* The most frequent adjacent pair over all words (count-weighted); ties go to the smaller key
 * so training is deterministic. */
static uint64_t best_pair(const trainer *tr, pair_count *pc, size_t pcap, uint64_t *best_count)
{
    memset(pc, 0, pcap * sizeof *pc);
    uint64_t best = 0, bc = 0;
    for (size_t i = 0; i < tr->cap; i++) {
        const word *w = &tr->w[i];
        for (uint32_t k = 0; w->h && k + 1 < w->nsym; k++) {
            uint64_t key = pair_key(w->sym[k], w->sym[k + 1]);
            size_t j = (key * 0x9e3779b97f4a7c15ULL >> 20) & (pcap - 1);
            while (pc[j].key && pc[j].key != key)
                j = (j + 1) & (pcap - 1);
            pc[j].key = key;
            pc[j].count += w->count;
            if (pc[j].count > bc || (pc[j].count == bc && key < best)) {
                bc = pc[j].count;
                best = key;
            }
        }
    }
    *best_count = bc;
    return best;
}

static void apply_merge(trainer *tr, int32_t a, int32_t b, int32_t id)
{
    for (size_t i = 0; i < tr->cap; i++) {
        word *w = &tr->w[i];
        if (!w->h)
            continue;
        uint32_t o = 0;
        for (uint32_t k = 0; k < w->nsym; k++) {
            if (k + 1 < w->nsym && w->sym[k] == a && w->sym[k + 1] == b) {
                w->sym[o++] = id;
                k++;
            } else {
                w->sym[o++] = w->sym[k];
            }
        }
        w->nsym = o;
    }
}

static jv pretok_json(const cl_bpe_train_opts *o)
{
    jv bl = jv_object();
    bl = cl_json_set_str(bl, "type", "ByteLevel");
    bl = cl_json_set(bl, "add_prefix_space", jv_bool(o->add_prefix_space));
    bl = cl_json_set(bl, "trim_offsets", jv_true());
    bl = cl_json_set(bl, "use_regex", jv_bool(o->gpt2));
    if (o->gpt2)
        return bl;
    jv split = jv_object();
    split = cl_json_set_str(split, "type", "Split");
    split = cl_json_set(split, "pattern",
                        cl_json_set_str(jv_object(), "Regex", o->pattern ? o->pattern : LLAMA3_PATTERN));
    split = cl_json_set_str(split, "behavior", "Isolated");
    split = cl_json_set(split, "invert", jv_false());
    jv seq = cl_json_set_str(jv_object(), "type", "Sequence");
    return cl_json_set(seq, "pretokenizers", JV_ARRAY(split, bl));
}

static jv added_json(const cl_bpe_train_opts *o, int32_t first_id)
{
    jv list = jv_array();
    for (size_t i = 0; i < o->n_added; i++) {
        jv a = jv_object();
        a = cl_json_set_num(a, "id", first_id + (double)i);
        a = cl_json_set_str(a, "content", o->added[i].content);
        a = cl_json_set(a, "single_word", jv_false());
        a = cl_json_set(a, "lstrip", jv_bool(o->added[i].lstrip));
        a = cl_json_set(a, "rstrip", jv_bool(o->added[i].rstrip));
        a = cl_json_set(a, "normalized", jv_false());
        a = cl_json_set(a, "special", jv_bool(o->added[i].special));
        list = jv_array_append(list, a);
    }
    return list;
}

static jv post_json(const cl_bpe_train_opts *o, int32_t bos_id)
{
    if (!o->bos) {
        jv p = cl_json_set_str(jv_object(), "type", "ByteLevel");
        p = cl_json_set(p, "add_prefix_space", jv_bool(o->add_prefix_space));
        p = cl_json_set(p, "trim_offsets", jv_false());
        return cl_json_set(p, "use_regex", jv_bool(o->gpt2));
    }
    jv st = cl_json_set(cl_json_set_str(jv_object(), "id", o->bos), "type_id", jv_number(0));
    jv sq = cl_json_set(cl_json_set_str(jv_object(), "id", "A"), "type_id", jv_number(0));
    jv single = JV_ARRAY(cl_json_set(jv_object(), "SpecialToken", jv_copy(st)),
                         cl_json_set(jv_object(), "Sequence", jv_copy(sq)));
    jv pair = JV_ARRAY(cl_json_set(jv_object(), "SpecialToken", st),
                       cl_json_set(jv_object(), "Sequence", sq),
                       cl_json_set(jv_object(), "SpecialToken",
                                   cl_json_set(cl_json_set_str(jv_object(), "id", o->bos), "type_id",
                                               jv_number(1))),
                       cl_json_set(jv_object(), "Sequence",
                                   cl_json_set(cl_json_set_str(jv_object(), "id", "B"), "type_id",
                                               jv_number(1))));
    jv spec = jv_object();
    spec = cl_json_set_str(spec, "id", o->bos);
    spec = cl_json_set(spec, "ids", JV_ARRAY(jv_number(bos_id)));
    spec = cl_json_set(spec, "tokens", JV_ARRAY(jv_string(o->bos)));
    jv p = cl_json_set_str(jv_object(), "type", "TemplateProcessing");
    p = cl_json_set(p, "single", single);
    p = cl_json_set(p, "pair", pair);
    return cl_json_set(p, "special_tokens", cl_json_set(jv_object(), o->bos, spec));
}

/* The whole tokenizer.json for tokens[0..n) (byte-level texts) and merges. */
static jv tokenizer_json(const cl_bpe_train_opts *o, char **text, int32_t n, const int32_t (*m)[2],
                         size_t nm)
{
    jv vocab = jv_object();
    for (int32_t i = 0; i < n; i++)
        if (text[i])
            vocab = jv_object_set(vocab, jv_string(text[i]), jv_number(i));
    jv merges = jv_array();
    for (size_t i = 0; i < nm; i++) {
        if (o->merges_as_pairs) {
            merges = jv_array_append(merges, JV_ARRAY(jv_string(text[m[i][0]]), jv_string(text[m[i][1]])));
        } else {
            jv s = jv_string_fmt("%s %s", text[m[i][0]], text[m[i][1]]);
            merges = jv_array_append(merges, s);
        }
    }
    jv model = jv_object();
    model = cl_json_set_str(model, "type", "BPE");
    model = cl_json_set(model, "dropout", jv_null());
    model = cl_json_set(model, "unk_token", jv_null());
    model = cl_json_set(model, "continuing_subword_prefix", jv_null());
    model = cl_json_set(model, "end_of_word_suffix", jv_null());
    model = cl_json_set(model, "fuse_unk", jv_false());
    model = cl_json_set(model, "byte_fallback", jv_false());
    model = cl_json_set(model, "ignore_merges", jv_bool(o->ignore_merges));
    model = cl_json_set(model, "vocab", vocab);
    model = cl_json_set(model, "merges", merges);
    int32_t bos_id = -1;
    for (size_t i = 0; o->bos && i < o->n_added; i++)
        if (strcmp(o->added[i].content, o->bos) == 0)
            bos_id = n + (int32_t)i;
    jv root = jv_object();
    root = cl_json_set_str(root, "version", "1.0");
    root = cl_json_set(root, "truncation", jv_null());
    root = cl_json_set(root, "padding", jv_null());
    root = cl_json_set(root, "added_tokens", added_json(o, n));
    root = cl_json_set(root, "normalizer",
                       o->nfc ? cl_json_set_str(jv_object(), "type", "NFC") : jv_null());
    root = cl_json_set(root, "pre_tokenizer", pretok_json(o));
    root = cl_json_set(root, "post_processor", post_json(o, bos_id));
    jv dec = cl_json_set_str(jv_object(), "type", "ByteLevel");
    dec = cl_json_set(dec, "add_prefix_space", jv_true());
    dec = cl_json_set(dec, "trim_offsets", jv_true());
    dec = cl_json_set(dec, "use_regex", jv_true());
    root = cl_json_set(root, "decoder", dec);
    return cl_json_set(root, "model", model);
}

static char *dump(jv v, size_t *len)
{
    char *s = cl_json_dump(&v, len);
    jv_free(v);
    return s;
}

char *cl_bpe_train(const char *const *texts, const size_t *lens, size_t n,
                   const cl_bpe_train_opts *o, size_t *len, cl_err *e)
{
    size_t target = o->vocab_size;
    if (target < 256 + o->n_added) {
        cl_err_set(e, CL_EXIT_USAGE, "vocabulary size %zu is below 256 bytes + %zu added tokens",
                   target, o->n_added);
        return NULL;
    }
    if (o->bos) {
        size_t i = 0;
        while (i < o->n_added && strcmp(o->added[i].content, o->bos) != 0)
            i++;
        if (i == o->n_added) {
            cl_err_set(e, CL_EXIT_USAGE, "bos token %s is not among the added tokens", o->bos);
            return NULL;
        }
    }
    size_t cap_tok = target + 1;
    char **text = calloc(cap_tok, sizeof *text);
    int32_t (*merges)[2] = calloc(target + 1, sizeof *merges);
    trainer tr = {0};
    char *out = NULL;
    cl_tokenizer *skel = NULL;
    pair_count *pc = NULL;
    if (!text || !merges)
        goto oom;
    /* The skeleton: bytes only.  Loading it gives the pre-tokenizer and the byte alphabet. */
    cl_bpe_train_opts so = *o;
    so.bos = NULL;
    for (int b = 0; b < 256; b++) {
        if (!(text[b] = malloc(3)))
            goto oom;
        text[b][cl_byte_text((unsigned char)b, text[b])] = 0;
    }
    size_t sl;
    char *sj = dump(tokenizer_json(&so, text, 256, merges, 0), &sl);
    if (!sj)
        goto oom;
    skel = cl_tokenizer_from_json(sj, sl, "bpe trainer skeleton", e);
    free(sj);
    if (!skel)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (cl_tokenizer_pretokenize(skel, texts[i], lens[i], count_word, &tr, e))
            goto fail;
    for (size_t i = 0; i < tr.cap; i++) {
        word *w = &tr.w[i];
        if (!w->h)
            continue;
        if (!(w->sym = malloc(w->len * sizeof *w->sym)))
            goto oom;
        for (uint32_t k = 0; k < w->len; k++)
            w->sym[k] = (uint8_t)tr.arena[w->off + k];
        w->nsym = w->len;
    }
    size_t pcap = grow_cap(tr.alen * 2 + 16);
    if (!(pc = malloc(pcap * sizeof *pc)))
        goto oom;
    int32_t ntok = 256;
    size_t nm = 0;
    unsigned minf = o->min_frequency ? o->min_frequency : 2;
    while ((size_t)ntok + o->n_added < target) {
        uint64_t cnt;
        uint64_t key = best_pair(&tr, pc, pcap, &cnt);
        if (!key || cnt < minf)
            break;
        key--;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(uint32_t)key;
        size_t la = strlen(text[a]), lb = strlen(text[b]);
        char *cat = malloc(la + lb + 1);
        if (!cat)
            goto oom;
        memcpy(cat, text[a], la);
        memcpy(cat + la, text[b], lb + 1);
        int32_t id = -1;
        for (int32_t k = 0; k < ntok && id < 0; k++)
            if (strcmp(text[k], cat) == 0)
                id = k;
        if (id < 0)
            text[id = ntok++] = cat;
        else
            free(cat);
        merges[nm][0] = a;
        merges[nm][1] = b;
        nm++;
        apply_merge(&tr, a, b, id);
    }
    out = dump(tokenizer_json(o, text, ntok, (const int32_t(*)[2])merges, nm), len);
    if (!out)
        goto oom;
    goto done;
oom:
    cl_err_set(e, CL_EXIT_SOFTWARE, "bpe trainer: out of memory");
fail:
    free(out);
    out = NULL;
done:
    cl_tokenizer_free(skel);
    for (size_t i = 0; i < tr.cap; i++)
        free(tr.w[i].sym);
    free(tr.w);
    free(tr.arena);
    free(pc);
    for (size_t i = 0; text && i < cap_tok; i++)
        free(text[i]);
    free(text);
    free(merges);
    return out;
}
