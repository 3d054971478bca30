/* tok — test driver for lib/model/tokenizer and the BPE trainer.
 *
 *   tok encode [--special|--both] [--tiktoken] [--roundtrip [--nfc]] FILE
 *                                              JSONL strings on stdin -> JSONL id arrays
 *                                              (--both: without, then with specials;
 *                                              --roundtrip: also check decode(encode(s)) == s)
 *   tok roundtrip [--tiktoken] [--nfc] FILE    checks decode(encode(s)) == s (NFC(s) with --nfc)
 *   tok corpus SEED N                          a deterministic fuzz corpus (JSONL strings)
 *   tok train FLAVOUR VOCAB                    JSONL corpus on stdin -> tokenizer.json on stdout
 *                                              (FLAVOUR: llama3, qwen2, gpt2)
 *   tok tiktoken FILE                          a tokenizer.json's vocabulary as a tiktoken file
 *   tok bench FILE TEXT                        encode TEXT repeatedly; prints MB per CPU second
 *   tok chat TOKENIZER                         {"format","gen","messages"} lines on stdin ->
 *                                              {"text","ids","mask","masked"} lines
 * Exit: 0 ok, 1 a mismatch, 2 usage, else the library's error code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "core/files.h"
#include "core/json.h"
#include "model/bpe_train.h"
#include "model/chat.h"
#include "model/tokenizer.h"

static char *read_line(FILE *f, size_t *len)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n && line[n - 1] == '\n')
        line[--n] = 0;
    *len = (size_t)n;
    return line;
}

/* The JSON string on one line, as bytes (malloc'd). */
static char *line_string(const char *line, size_t n, size_t *len)
{
    jv v = cl_json_parse(line, n);
    if (jv_get_kind(v) != JV_KIND_STRING) {
        jv_free(v);
        return NULL;
    }
    *len = (size_t)jv_string_length_bytes(jv_copy(v));
    char *s = malloc(*len + 1);
    memcpy(s, jv_string_value(v), *len + 1);
    jv_free(v);
    return s;
}

static void print_ids(const cl_ids *ids)
{
    putchar('[');
    for (size_t i = 0; i < ids->n; i++)
        printf(i ? ",%d" : "%d", (int)ids->v[i]);
    puts("]");
}

/* The tokenizer.json at path, or with tiktoken the tiktoken file; NULL after saying why, with
 * *rc the library's exit code. */
static cl_tokenizer *open_tok(const char *path, int tiktoken, int *rc)
{
    /* Llama-3's original tokenizer is a tiktoken file with these specials after it. */
    static const char *names[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                  "<|end_header_id|>", "<|eot_id|>"};
    static const int32_t ids[] = {128000, 128001, 128006, 128007, 128009};
    cl_err e = {0};
    cl_tokenizer *t = tiktoken ? cl_tokenizer_load_tiktoken(path, NULL, names, ids, 5, &e)
                               : cl_tokenizer_load(path, &e);
    if (!t) {
        fprintf(stderr, "tok: %s\n", e.msg);
        *rc = e.code;
    }
    return t;
}

/* decode(ids) must give s back (its NFC form with nfc); 1 and a message when it does not. */
static int check_roundtrip(const cl_tokenizer *t, const cl_ids *ids, const char *s, size_t len,
                           int nfc, size_t lineno)
{
    utf8proc_uint8_t *norm = NULL;
    if (nfc) {
        utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &norm,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        s = (const char *)norm;
        len = k < 0 ? 0 : (size_t)k;
    }
    cl_err e = {0};
    size_t dl;
    char *d = cl_tokenizer_decode(t, ids->v, ids->n, 0, &dl, &e);
    int bad = !d || dl != len || memcmp(d, s, len) != 0;
    if (bad)
        fprintf(stderr, "tok: stdin:%zu: decode(encode(s)) != s\n", lineno);
    free(d);
    free(norm);
    return bad;
}

/* encode prints ids (--special: with the post-processor's tokens; --both: a line without, then
 * one with); --roundtrip also checks decode(encode(s)) == s.  The roundtrip command only checks. */
static int cmd_encode(int argc, char **argv, int print)
{
    int special = 0, both = 0, tiktoken = 0, nfc = 0, roundtrip = !print;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--special") == 0)
            special = 1;
        else if (strcmp(argv[i], "--both") == 0)
            both = 1;
        else if (strcmp(argv[i], "--tiktoken") == 0)
            tiktoken = 1;
        else if (strcmp(argv[i], "--nfc") == 0)
            nfc = 1;
        else if (strcmp(argv[i], "--roundtrip") == 0)
            roundtrip = 1;
        else
            path = argv[i];
    }
    if (!path)
        return 2;
    int rc = 0;
    cl_tokenizer *t = open_tok(path, tiktoken, &rc);
    if (!t)
        return rc;
    cl_err e = {0};
    char *line;
    size_t n, lineno = 0;
    while (rc == 0 && (line = read_line(stdin, &n))) {
        lineno++;
        size_t len;
        char *s = line_string(line, n, &len);
        free(line);
        if (!s) {
            fprintf(stderr, "tok: stdin:%zu: not a JSON string\n", lineno);
            rc = 65;
            break;
        }
        cl_ids plain = {0}, with = {0};
        if (cl_tokenizer_encode(t, s, len, 0, &plain, &e) ||
            ((special || both) && cl_tokenizer_encode(t, s, len, 1, &with, &e))) {
            fprintf(stderr, "tok: stdin:%zu: %s\n", lineno, e.msg);
            rc = e.code;
        } else {
            if (print && (both || !special))
                print_ids(&plain);
            if (print && (both || special))
                print_ids(&with);
            if (roundtrip)
                rc = check_roundtrip(t, &plain, s, len, nfc, lineno);
        }
        cl_ids_free(&plain);
        cl_ids_free(&with);
        free(s);
    }
    cl_tokenizer_free(t);
    return rc;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Fragments that stress each part of the pipeline; corpus lines are random concatenations. */
static const char *const fragments[] = {
    "Hello", " world", " the", " The", "THE", " quick", " brown", " fox", "don't", " I'M",
    " we're", " they'll", " she'd", " it's", " You've", "'S", "'ll", " 'tis", "12345", "3.14159",
    " 2024", "0", "٣٤٥", "１２３", " 42nd", "\n", "\n\n", "\r\n", "\r\n\r\n", "\t", "  ", "    ",
    "   \n", " \n ", "\u00a0", "\u3000", "caf\u00e9", "cafe\u0301", "\u00c5ngstr\u00f6m",
    "A\u030angstro\u0308m", "na\u00efve", "\u65e5\u672c\u8a9e", "\u4f60\u597d\u4e16\u754c",
    "\ud55c\uad6d\uc5b4", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\xf0\x9f\x98\x80", "\xf0\x9f\x91\xa9\xe2\x80\x8d"
    "\xf0\x9f\x92\xbb", "\xf0\x9f\x87\xab\xf0\x9f\x87\xb7", "\u2014", "\u2026", "...", "!!!", "?!",
    "(x)", "{\"a\": [1, 2]}", "<html>", "</div>", "a_b", "snake_case", "CamelCase", "x86_64",
    "https://example.com/a?b=c", "#include <stdio.h>", "    return 0;", "\u0130stanbul",
    "\u00df", "\u1e9e", "\ufb01", "\u2460", "\u00bd", "<|eot_id|>", "<|begin_of_text|>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id", "<|im_", "<think>", "</think>",
    " <|eot_id|> ", "  <|im_end|>  ", "<|start_header_id|>user<|end_header_id|>", "<|x|>",
    "\x01", "\x7f", "\u200b", "\u200d", "e\u0301\u0301", "\u1100\u1161\u11a8",
};

static int cmd_corpus(unsigned long seed, unsigned long n)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    size_t nf = sizeof fragments / sizeof *fragments;
    for (unsigned long i = 0; i < n; i++) {
        jv str = jv_string("");
        int parts = 1 + (int)(rng_next(&s) % 12);
        for (int k = 0; k < parts; k++)
            str = jv_string_append_str(str, fragments[rng_next(&s) % nf]);
        jv d = jv_dump_string(str, 0);
        puts(jv_string_value(d));
        jv_free(d);
    }
    return 0;
}

static int cmd_train(const char *flavour, size_t vocab)
{
    static const cl_bpe_added llama_added[] = {
        {"<|begin_of_text|>", 1, 0, 0}, {"<|end_of_text|>", 1, 0, 0},
        {"<|start_header_id|>", 1, 0, 0}, {"<|end_header_id|>", 1, 0, 0},
        {"<|eot_id|>", 1, 0, 0}, {"<|x|>", 1, 1, 1},
    };
    static const cl_bpe_added qwen_added[] = {
        {"<|endoftext|>", 1, 0, 0}, {"<|im_start|>", 1, 0, 0}, {"<|im_end|>", 1, 0, 0},
        {"<think>", 0, 0, 0}, {"</think>", 0, 0, 0},
    };
    static const cl_bpe_added gpt2_added[] = {{"<|endoftext|>", 1, 0, 0}, {"<|x|>", 0, 0, 1}};
    cl_bpe_train_opts o = {.vocab_size = vocab};
    if (strcmp(flavour, "llama3") == 0) {
        o.ignore_merges = 1;
        o.bos = "<|begin_of_text|>";
        o.added = llama_added;
        o.n_added = sizeof llama_added / sizeof *llama_added;
    } else if (strcmp(flavour, "qwen2") == 0) {
        o.pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}"
                    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        o.nfc = 1;
        o.merges_as_pairs = 1;
        o.added = qwen_added;
        o.n_added = sizeof qwen_added / sizeof *qwen_added;
    } else if (strcmp(flavour, "gpt2") == 0) {
        o.gpt2 = 1;
        o.add_prefix_space = 1;
        o.added = gpt2_added;
        o.n_added = sizeof gpt2_added / sizeof *gpt2_added;
    } else {
        return 2;
    }
    size_t cap = 0, n = 0, len;
    char **texts = NULL, *line;
    size_t *lens = NULL;
    while ((line = read_line(stdin, &len))) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            texts = realloc(texts, cap * sizeof *texts);
            lens = realloc(lens, cap * sizeof *lens);
        }
        texts[n] = line_string(line, len, &lens[n]);
        free(line);
        if (texts[n])
            n++;
    }
    cl_err e = {0};
    size_t jl;
    char *json = cl_bpe_train((const char *const *)texts, lens, n, &o, &jl, &e);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    if (!json) {
        fprintf(stderr, "tok: %s\n", e.msg);
        return e.code;
    }
    fwrite(json, 1, jl, stdout);
    putchar('\n');
    free(json);
    return 0;
}

static int cmd_tiktoken(const char *path)
{
    int rc = 0;
    cl_tokenizer *t = open_tok(path, 0, &rc);
    if (!t)
        return rc;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int32_t id = 0; id < cl_tokenizer_vocab_size(t); id++) {
        size_t n;
        const unsigned char *b = (const unsigned char *)cl_tokenizer_token_bytes(t, id, &n);
        if (!b || cl_tokenizer_token_kind(t, id) != CL_TOKEN_NORMAL)
            continue;
        for (size_t i = 0; i < n; i += 3) {
            unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? b[i + 1] : 0) << 8 | (i + 2 < n ? b[i + 2] : 0);
            putchar(b64[v >> 18 & 63]);
            putchar(b64[v >> 12 & 63]);
            putchar(i + 1 < n ? b64[v >> 6 & 63] : '=');
            putchar(i + 2 < n ? b64[v & 63] : '=');
        }
        printf(" %d\n", (int)id);
    }
    cl_tokenizer_free(t);
    return 0;
}

static int cmd_bench(const char *path, const char *textpath)
{
    int rc = 0;
    cl_tokenizer *t = open_tok(path, 0, &rc);
    if (!t)
        return rc;
    cl_err e = {0};
    size_t got;
    char *buf = cl_file_read(textpath, &got, &e);
    if (!buf) {
        fprintf(stderr, "tok: %s\n", e.msg);
        cl_tokenizer_free(t);
        return e.code;
    }
    struct timespec a, b;
    cl_ids ids = {0};
    size_t total = 0, ntok = 0;
    double secs = 0;
    /* CPU time of this (single-threaded) process: a busy machine does not skew it. */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    double cold = 0;
    while (secs < 2.0) {
        ids.n = 0;
        if (cl_tokenizer_encode(t, buf, got, 0, &ids, &e)) {
            fprintf(stderr, "tok: %s\n", e.msg);
            return e.code;
        }
        total += got;
        ntok += ids.n;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
        secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        if (cold == 0)
            cold = (double)got / secs / 1e6; /* the first pass starts with an empty word cache */
    }
    printf("%.1f MB/s %.0f tokens/s %zu tokens %.1f MB/s-cold\n", (double)total / secs / 1e6,
           (double)ntok / secs, ids.n, cold);
    cl_ids_free(&ids);
    free(buf);
    cl_tokenizer_free(t);
    return 0;
}

static int cmd_chat(const char *path)
{
    int rc = 0;
    cl_tokenizer *tk = open_tok(path, 0, &rc);
    if (!tk)
        return rc;
    cl_err e = {0};
    char *line;
    size_t n, lineno = 0;
    while (rc == 0 && (line = read_line(stdin, &n))) {
        lineno++;
        jv v = cl_json_parse(line, n);
        free(line);
        const char *fname = cl_json_str(&v, "format");
        int f = fname ? cl_chat_format_parse(fname) : -1;
        jv msgs = cl_json_get(&v, "messages");
        int nm = jv_get_kind(msgs) == JV_KIND_ARRAY ? jv_array_length(jv_copy(msgs)) : -1;
        if (f < 0 || nm < 0) {
            fprintf(stderr, "tok: stdin:%zu: needs format and messages\n", lineno);
            rc = 65;
        }
        cl_chat_msg *m = calloc((size_t)(nm > 0 ? nm : 1), sizeof *m);
        jv *keep = calloc((size_t)(nm > 0 ? nm : 1), sizeof *keep);
        for (int i = 0; rc == 0 && i < nm; i++) {
            keep[i] = jv_array_get(jv_copy(msgs), i);
            m[i] = (cl_chat_msg){cl_json_str(&keep[i], "role"), cl_json_str(&keep[i], "content")};
        }
        int gen = cl_json_bool(&v, "gen", 0);
        cl_chat_tokens ct = {0};
        size_t tl_len = 0;
        char *text = rc ? NULL : cl_chat_render_text((cl_chat_format)f, m, (size_t)nm, gen, &tl_len, &e);
        if (rc == 0 && (!text || cl_chat_render(tk, (cl_chat_format)f, m, (size_t)nm, gen, &ct, &e))) {
            fprintf(stderr, "tok: stdin:%zu: %s\n", lineno, e.msg);
            rc = e.code;
        }
        if (rc == 0) {
            jv ids = jv_array(), mask = jv_array();
            for (size_t i = 0; i < ct.ids.n; i++) {
                ids = jv_array_append(ids, jv_number(ct.ids.v[i]));
                mask = jv_array_append(mask, jv_number(ct.mask[i]));
            }
            /* The masked spans, decoded: what SFT trains the model to write. */
            jv spans = jv_array();
            for (size_t i = 0; i < ct.ids.n;) {
                size_t j = i;
                while (j < ct.ids.n && ct.mask[j] == ct.mask[i])
                    j++;
                if (ct.mask[i]) {
                    size_t dl;
                    char *d = cl_tokenizer_decode(tk, ct.ids.v + i, j - i, 0, &dl, &e);
                    spans = jv_array_append(spans, jv_string_sized(d, (int)dl));
                    free(d);
                }
                i = j;
            }
            jv out = cl_json_set(cl_json_set(cl_json_set(cl_json_set(jv_object(), "text",
                                 jv_string_sized(text, (int)tl_len)), "ids", ids), "mask", mask),
                                 "masked", spans);
            jv d = jv_dump_string(out, 0);
            puts(jv_string_value(d));
            jv_free(d);
        }
        free(text);
        cl_chat_tokens_free(&ct);
        for (int i = 0; i < nm; i++)
            jv_free(keep[i]);
        free(keep);
        free(m);
        jv_free(msgs);
        jv_free(v);
    }
    cl_tokenizer_free(tk);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "chat") == 0)
        return cmd_chat(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "encode") == 0)
        return cmd_encode(argc - 2, argv + 2, 1);
    if (argc >= 3 && strcmp(argv[1], "roundtrip") == 0)
        return cmd_encode(argc - 2, argv + 2, 0);
    if (argc == 4 && strcmp(argv[1], "corpus") == 0)
        return cmd_corpus(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "train") == 0)
        return cmd_train(argv[2], strtoul(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "tiktoken") == 0)
        return cmd_tiktoken(argv[2]);
    if (argc == 4 && strcmp(argv[1], "bench") == 0)
        return cmd_bench(argv[2], argv[3]);
    fprintf(stderr, "usage: tok encode|roundtrip|corpus|train|tiktoken|bench ...\n");
    return 2;
}
