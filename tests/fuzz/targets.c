/* targets.c — one fuzz entry point per reader of untrusted model files.
 *
 * Each takes arbitrary bytes and must either accept them or fail with a message; a crash, a
 * leak or an ASan report is the bug.  Included by the libFuzzer drivers (fuzz_*.c, built by
 * `make fuzz` with clang) and by tests/unit/test_fuzz_readers.c, which runs a deterministic
 * mutation loop over valid seeds in `make check`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
