/* Deterministic mutation fuzzing of every model-file reader (runs in make check; the same
 * entry points serve libFuzzer via `make fuzz`).  Seeds are valid files made here; each
 * iteration applies a few mutations — bit flips, interesting bytes, truncation, deleted and
 * duplicated (overlapping) chunks, huge length fields, random files — and the reader must
 * accept or refuse with a message, never crash (ASan/UBSan in make SAN=1 check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fuzz/targets.c"

typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void mutate(buf *b)
{
    static const unsigned char interesting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '}', '[', ']',
                                                ',', ':', '9', '-', ' ', '\\', 'e', 'n'};
    int ops = 1 + (int)(rnd() % 4);
    for (int k = 0; k < ops; k++) {
        size_t n = b->n;
        switch (rnd() % 8) {
        case 0:
            if (n)
                b->p[rnd() % n] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1:
            if (n)
                b->p[rnd() % n] = interesting[rnd() % sizeof interesting];
            break;
        case 2:
            b->n = n ? rnd() % n : 0;
            break;
        case 3: { /* delete a chunk */
            if (n < 2)
                break;
            size_t at = rnd() % n, len = 1 + rnd() % (n - at < 64 ? n - at : 64);
            memmove(b->p + at, b->p + at + len, n - at - len);
            b->n -= len;
            break;
        }
        case 4: { /* duplicate a chunk in place: overlapping records */
            if (n < 2)
                break;
            size_t at = rnd() % n, len = 1 + rnd() % (n - at < 64 ? n - at : 64);
            unsigned char *q = realloc(b->p, n + len);
            if (!q)
                break;
            b->p = q;
            memmove(q + at + len, q + at, n - at);
            b->n += len;
            break;
        }
        case 5: { /* a huge or odd length field */
            static const uint64_t v[] = {0, 1, 7, 8, 0xffffffffULL, 0x7fffffffffffffffULL,
                                         0xffffffffffffffffULL, 1ULL << 40, 4096};
            if (n >= 8) {
                uint64_t x = v[rnd() % (sizeof v / sizeof *v)];
                memcpy(b->p + rnd() % (n - 7), &x, rnd() % 2 ? 8 : 4);
            }
            break;
        }
        case 6: /* a digit into a large number */
            for (size_t i = n ? rnd() % n : 0; i < n; i++)
                if (b->p[i] >= '0' && b->p[i] <= '9') {
                    b->p[i] = '9';
                    break;
                }
            break;
        default:
            if (rnd() % 16 == 0) /* sometimes just noise */
                for (size_t i = 0; i < n; i++)
                    b->p[i] = (unsigned char)rnd();
            break;
        }
    }
}

static int iterations(int dflt)
{
    const char *s = getenv("CL_FUZZ_ITERS");
    return s ? atoi(s) : dflt;
}

/* With CL_FUZZ_SEEDS=DIR set, each valid seed is also written to DIR/NAME/seedK: the corpus
 * the libFuzzer drivers start from (scripts/fuzz-run), made by the same writers. */
static void save_seed(const char *name, const buf *seed)
{
    static int k;
    const char *dir = getenv("CL_FUZZ_SEEDS");
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/seed%d", dir, name, k++);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(seed->p, 1, seed->n, f), seed->n);
    assert_int_equal(fclose(f), 0);
}

/* Runs target on the seed (must be accepted) and on mutants; some mutants must be refused. */
static void fuzz_loop(const char *name, int (*target)(const uint8_t *, size_t), const buf *seed, int n)
{
    assert_int_equal(target(seed->p, seed->n), 1);
    save_seed(name, seed);
    int refused = 0;
    for (int i = 0; i < n; i++) {
        buf b = {malloc(seed->n + 1), seed->n};
        memcpy(b.p, seed->p, seed->n);
        mutate(&b);
        refused += !target(b.p, b.n);
        free(b.p);
    }
    assert_true(refused > 0);
}

static buf slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    buf b = {malloc(1 << 20), 0};
    b.n = fread(b.p, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/cl-fuzz.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void tokenizer_json_reader(void **state)
{
    (void)state;
    const char *texts[] = {"the cat sat on the mat, the cat's hat", "12345 6789 caf\xc3\xa9 na\xc3\xafve",
                           "hello hello hello world world"};
    size_t lens[3];
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(texts[i]);
    cl_bpe_added added[] = {{"<|eot_id|>", 1, 0, 0}, {"<x>", 0, 1, 1}};
    cl_bpe_train_opts o = {.vocab_size = 280, .ignore_merges = 1, .bos = "<|eot_id|>",
                           .added = added, .n_added = 2};
    for (int flavour = 0; flavour < 2; flavour++) {
        o.merges_as_pairs = flavour;
        o.nfc = flavour;
        cl_err e = {0};
        buf seed = {NULL, 0};
        seed.p = (unsigned char *)cl_bpe_train(texts, lens, 3, &o, &seed.n, &e);
        assert_non_null(seed.p);
        fuzz_loop("tokenizer_json", fuzz_tokenizer_json, &seed, iterations(1500));
        free(seed.p);
    }
}

static void tiktoken_reader(void **state)
{
    (void)state;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *text = malloc(8192);
    size_t n = 0;
    /* Every byte, then "ab", "abc", "de". */
    for (int b = 0; b < 256; b++)
        n += (size_t)sprintf(text + n, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    n += (size_t)sprintf(text + n, "YWI= 256\nYWJj 257\nZGU= 258\n");
    buf seed = {(unsigned char *)text, n};
    fuzz_loop("tiktoken", fuzz_tiktoken, &seed, iterations(1000));
    free(text);
}

static void safetensors_reader(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[4] = {0x3c00, 0x4000, 0, 0x8000};
    cl_st_tensor t[] = {{"a", CL_ST_F32, 2, {2, 3}, a, 0}, {"b.bf16", CL_ST_BF16, 1, {4}, h, 0},
                        {"empty", CL_ST_F16, 2, {0, 5}, h, 0}};
    char path[128];
    snprintf(path, sizeof path, "%s/x.safetensors", tmpdir());
    cl_err e = {0};
    assert_int_equal(cl_st_write(path, t, 3, &e), 0);
    buf seed = slurp(path);
    unlink(path);
    fuzz_loop("safetensors", fuzz_safetensors, &seed, iterations(20000));
    free(seed.p);
}

static void gguf_reader(void **state)
{
    (void)state;
    cl_gguf_writer *w = cl_gguf_writer_new();
    const char *toks[] = {"a", "b", "ab"};
    int32_t types[] = {1, 1, 3};
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i;
    cl_err e = {0};
    assert_int_equal(cl_gguf_kv_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(cl_gguf_kv_u32(w, "general.alignment", 32), 0);
    assert_int_equal(cl_gguf_kv_strs(w, "tokenizer.ggml.tokens", toks, 3), 0);
    assert_int_equal(cl_gguf_kv_i32s(w, "tokenizer.ggml.token_type", types, 3), 0);
    assert_int_equal(cl_gguf_kv_bool(w, "x.flag", 1), 0);
    assert_int_equal(cl_gguf_kv_f32(w, "x.eps", 1e-5f), 0);
    int64_t s1[] = {3, 4}, s2[] = {5};
    assert_int_equal(cl_gguf_add_tensor(w, "m.weight", CL_ST_F32, 2, s1, x, &e), 0);
    assert_int_equal(cl_gguf_add_tensor(w, "v.weight", CL_ST_F32, 1, s2, x, &e), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/x.gguf", tmpdir());
    assert_int_equal(cl_gguf_write(w, path, &e), 0);
    cl_gguf_writer_free(w);
    buf seed = slurp(path);
    unlink(path);
    fuzz_loop("gguf", fuzz_gguf, &seed, iterations(20000));
    free(seed.p);
}

static void peft_config_reader(void **state)
{
    (void)state;
    static const char cfg[] =
        "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":8,\"lora_alpha\":16,"
        "\"lora_dropout\":0.05,\"bias\":\"none\",\"target_modules\":[\"q_proj\",\"v_proj\"],"
        "\"use_rslora\":false,\"use_dora\":false,\"rank_pattern\":{},\"modules_to_save\":null}";
    buf seed = {malloc(sizeof cfg), sizeof cfg - 1};
    memcpy(seed.p, cfg, sizeof cfg);
    fuzz_loop("peft_config", fuzz_peft_config, &seed, iterations(5000));
    free(seed.p);
}

static void rows_reader(void **state)
{
    (void)state;
    static const char *seeds[] = {
        "{\"id\":\"a\",\"prompt\":\"hi \\u00e9\",\"n\":[1,2.5e3,null,true]}\n\n{\"id\":\"b\"}\r\n",
        "[\n  {\"id\": \"a\", \"x\": [1, {\"y\": \"]\"}]},\n  {\"id\": \"b\"}\n]\n",
    };
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        buf seed = {(unsigned char *)(uintptr_t)seeds[i], strlen(seeds[i])};
        fuzz_loop("rows", fuzz_rows, &seed, iterations(3000));
    }
}

static void lenient_json_reader(void **state)
{
    (void)state;
    static const char text[] = "Sure! ```json\n{'response': \"\"\"a \"quoted\"\nline\"\"\", score: '0.5',"
                               " \"ok\": True, \"list\": [1, 2,], \"x\": {\"y\": None}}\n``` Hope this helps";
    buf seed = {(unsigned char *)(uintptr_t)text, sizeof text - 1};
    fuzz_loop("lenient_json", fuzz_lenient_json, &seed, iterations(5000));
}

static void chat_reader(void **state)
{
    (void)state;
    static const char conv[] =
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\" hi <|eot_id|>\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>x</think>\\n42 \"},{\"role\":\"user\",\"content\":\"ok\"}]";
    buf seed = {(unsigned char *)(uintptr_t)conv, sizeof conv - 1};
    fuzz_loop("chat", fuzz_chat, &seed, iterations(1500));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokenizer_json_reader), cmocka_unit_test(tiktoken_reader),
        cmocka_unit_test(safetensors_reader),    cmocka_unit_test(gguf_reader),
        cmocka_unit_test(peft_config_reader),    cmocka_unit_test(rows_reader),
        cmocka_unit_test(lenient_json_reader),   cmocka_unit_test(chat_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
