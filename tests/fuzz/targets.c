/* targets.c — one fuzz entry point per reader of untrusted input: model files, record rows
 * (JSONL or a JSON array, plain or zstd), model outputs read as lenient JSON, conversations
 * rendered by the chat templates.
 *
 * Each takes arbitrary bytes and must either accept them or fail with a message; a crash, a
 * leak or an ASan report is the bug.  Included by the readers' libFuzzer drivers (fuzz_*.c,
 * built by `make fuzz` with clang) and by tests/unit/test_fuzz_readers.c, which runs a
 * deterministic mutation loop over valid seeds in `make check`.  fuzz_bleu.c stands apart: it
 * checks a computation against an oracle rather than a reader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "collab/lenient_json.h"
#include "core/json.h"
#include "core/rows.h"
#include "model/bpe_train.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/peft.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

/* A failure must come with a message; returns 1 when the input was accepted. */
static int fuzz_outcome(const void *ok, const cl_err *e)
{
    if (!ok && !e->msg[0])
        abort();
    return ok != NULL;
}

/* Reads every byte of a tensor the reader accepted: ASan proves it lies inside the input. */
static void touch(const void *data, size_t n)
{
    volatile unsigned char sink = 0;
    for (size_t k = 0; k < n; k++)
        sink ^= ((const unsigned char *)data)[k];
    (void)sink;
}

static int fuzz_tokenizer_json(const uint8_t *d, size_t n)
{
    cl_err e = {0};
    cl_tokenizer *t = cl_tokenizer_from_json((const char *)d, n, "fuzz.json", &e);
    if (t) {
        /* A loaded tokenizer must encode and decode without crashing too. */
        static const char text[] = "Hello <|eot_id|> world 123 caf\xc3\xa9\n\n  x";
        cl_ids ids = {0};
        if (cl_tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &e) == 0) {
            char *s = cl_tokenizer_decode(t, ids.v, ids.n, 0, NULL, &e);
            free(s);
        }
        cl_ids_free(&ids);
    }
    int ok = fuzz_outcome(t, &e);
    cl_tokenizer_free(t);
    return ok;
}

static int fuzz_tiktoken(const uint8_t *d, size_t n)
{
    cl_err e = {0};
    static const char *names[] = {"<|endoftext|>"};
    static const int32_t ids[] = {300};
    cl_tokenizer *t = cl_tokenizer_from_tiktoken((const char *)d, n, "fuzz.tiktoken", NULL, names, ids, 1, &e);
    if (t) {
        cl_ids v = {0};
        cl_tokenizer_encode(t, "abc <|endoftext|> de", 20, 0, &v, &e);
        cl_ids_free(&v);
    }
    int ok = fuzz_outcome(t, &e);
    cl_tokenizer_free(t);
    return ok;
}

static int fuzz_safetensors(const uint8_t *d, size_t n)
{
    cl_err e = {0};
    cl_safetensors *f = cl_st_open_buffer(d, n, "fuzz.safetensors", &e);
    for (size_t i = 0; f && i < cl_st_count(f); i++)
        touch(cl_st_at(f, i)->data, cl_st_at(f, i)->nbytes);
    int ok = fuzz_outcome(f, &e);
    cl_st_close(f);
    return ok;
}

static int fuzz_gguf(const uint8_t *d, size_t n)
{
    cl_err e = {0};
    cl_gguf *g = cl_gguf_open_buffer(d, n, "fuzz.gguf", &e);
    for (size_t i = 0; g && i < cl_gguf_tensor_count(g); i++)
        touch(cl_gguf_tensor_at(g, i)->data, cl_gguf_tensor_at(g, i)->nbytes);
    if (g)
        free(cl_gguf_get_str(g, "general.architecture"));
    int ok = fuzz_outcome(g, &e);
    cl_gguf_close(g);
    return ok;
}

static int fuzz_peft_config(const uint8_t *d, size_t n)
{
    cl_err e = {0};
    cl_peft_config c;
    int rc = cl_peft_config_parse((const char *)d, n, "adapter_config.json", &c, &e);
    return fuzz_outcome(rc == 0 ? &c : NULL, &e);
}

/* Rows are read from a path (the reader sniffs zstd by its magic), so each input is written to
 * one scratch file first, removed at exit.  Accepted = every row it cuts out is valid JSON. */
static char rows_path[64];
static void rows_cleanup(void)
{
    unlink(rows_path);
}

static int fuzz_rows(const uint8_t *d, size_t n)
{
    const char *path = rows_path;
    if (!rows_path[0]) {
        snprintf(rows_path, sizeof rows_path, "/tmp/cl-fuzz-rows.XXXXXX");
        int fd = mkstemp(rows_path);
        if (fd < 0)
            abort();
        close(fd);
        atexit(rows_cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0)
        abort();
    cl_err e = {0};
    cl_rows *r = cl_rows_open(path, 1, &e);
    if (!r)
        abort(); /* the file exists: opening cannot fail */
    cl_row row;
    int rc, ok = 1;
    while ((rc = cl_rows_next(r, &row, &e)) == 1) {
        if (row.len == strspn(row.text, " \t"))
            continue; /* blank lines are not records (records.c skips them the same way) */
        cl_json_check c;
        if (cl_json_validate(row.text, row.len, &c) != 0) {
            ok = 0;
            continue;
        }
        jv v = cl_json_parse(row.text, row.len);
        if (!jv_is_valid(v))
            abort(); /* validated text must parse */
        jv_free(v);
    }
    if (rc < 0 && !e.msg[0])
        abort();
    cl_rows_close(r);
    return rc == 0 && ok;
}

/* A model output read as lenient JSON: an object or a reason, and an object reads back. */
static int fuzz_lenient_json(const uint8_t *d, size_t n)
{
    jv v = cl_lenient_json((const char *)d, n);
    int ok = jv_is_valid(v);
    if (ok) {
        if (jv_get_kind(v) != JV_KIND_OBJECT)
            abort();
        double x;
        (void)cl_lenient_num(&v, "score", &x);
        size_t len;
        char *s = cl_json_dump(&v, &len);
        cl_json_check c;
        if (cl_json_validate(s, len, &c) != 0 || !c.is_object)
            abort(); /* what we accepted must print as strict JSON */
        free(s);
    } else {
        jv msg = jv_invalid_get_msg(jv_copy(v));
        if (jv_get_kind(msg) != JV_KIND_STRING)
            abort(); /* a refusal says why */
        jv_free(msg);
    }
    jv_free(v);
    return ok;
}

/* A conversation (a JSON array of {role, content}) rendered by every chat format, as text and
 * as ids with the loss mask, with and without the generation prompt.  Accepted = it rendered. */
static int fuzz_chat(const uint8_t *d, size_t n)
{
    static cl_tokenizer *tok;
    cl_err e = {0};
    if (!tok) {
        const char *text = "user assistant system hello world the answer is 42 <think>";
        size_t len = strlen(text), jl;
        cl_bpe_added added[] = {{"<|begin_of_text|>", 1, 0, 0}, {"<|start_header_id|>", 1, 0, 0},
                                {"<|end_header_id|>", 1, 0, 0}, {"<|eot_id|>", 1, 0, 0},
                                {"<|im_start|>", 1, 0, 0},      {"<|im_end|>", 1, 0, 0}};
        cl_bpe_train_opts o = {.vocab_size = 300, .added = added, .n_added = 6};
        char *json = cl_bpe_train(&text, &len, 1, &o, &jl, &e);
        tok = json ? cl_tokenizer_from_json(json, jl, "chat", &e) : NULL;
        free(json);
        if (!tok)
            abort();
    }
    cl_json_check c;
    if (cl_json_validate((const char *)d, n, &c) != 0)
        return 0;
    jv conv = cl_json_parse((const char *)d, n);
    if (jv_get_kind(conv) != JV_KIND_ARRAY || jv_array_length(jv_copy(conv)) > 64) {
        jv_free(conv);
        return 0;
    }
    int m = jv_array_length(jv_copy(conv));
    cl_chat_msg msgs[64];
    jv keep[64];
    for (int i = 0; i < m; i++) {
        keep[i] = jv_array_get(jv_copy(conv), i);
        const char *role = jv_get_kind(keep[i]) == JV_KIND_OBJECT ? cl_json_str(&keep[i], "role") : NULL;
        const char *content = jv_get_kind(keep[i]) == JV_KIND_OBJECT ? cl_json_str(&keep[i], "content") : NULL;
        msgs[i] = (cl_chat_msg){role ? role : "user", content ? content : ""};
    }
    int ok = 1;
    for (int f = CL_CHAT_LLAMA3; f <= CL_CHAT_QWEN3; f++)
        for (int gen = 0; gen < 2; gen++) {
            cl_err fe = {0};
            size_t len;
            char *text = cl_chat_render_text((cl_chat_format)f, msgs, (size_t)m, gen, &len, &fe);
            if (text && len != strlen(text))
                abort();
            free(text);
            cl_chat_tokens t = {0};
            int rc = cl_chat_render(tok, (cl_chat_format)f, msgs, (size_t)m, gen, &t, &fe);
            if (rc == 0)
                touch(t.mask, t.ids.n); /* every id has its mask entry */
            ok &= fuzz_outcome(rc == 0 ? &t : NULL, &fe);
            cl_chat_tokens_free(&t);
        }
    for (int i = 0; i < m; i++)
        jv_free(keep[i]);
    jv_free(conv);
    return ok;
}
