/* jsonmask-bench — what constrained decoding (lib/model/jsonmask) costs per token, apart from
 * the model: over a tokenizer's vocabulary (tokenizer.json, or a tiktoken file such as cl100k),
 * the CPU time of one full mask computed from scratch, of one served from the cache, and of one
 * single-token test (the check-first path), at the states a reply of the proactive-assistant
 * schema passes through.
 *   jsonmask-bench TOKENIZER VOCAB   prints "vocab V full_ms F cached_us C allows_us A" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "core/err.h"
#include "core/json.h"
#include "model/jsonmask.h"

static const char *const PREFIXES[] = {
    "", "{", "{\"", "{\"thought", "{\"thought\":", "{\"thought\": \"the user wants",
    "{\"thought\": \"the user wants a \\\"colour\\\"", "{\"thought\": \"x\", \"response\": \"Col",
    "{\"thought\": \"x\", \"response\": \"Colour 1 is caf\xc3\xa9", "{\"thought\": \"x\", \"response\": \"y\"",
};
#define NP ((int)(sizeof PREFIXES / sizeof *PREFIXES))

/* The proactive assistant's reply schema as cl-rollout sends it (each cl_jmask owns its own). */
static cl_jschema *reply_schema(void)
{
    cl_err e = {0};
    cl_jschema *s;
    jv rf = jv_parse("{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r\",\"schema\":{\"type\":\"object\","
                     "\"properties\":{\"current_problem\":{\"type\":\"string\"},\"thought\":{\"type\":\"string\"},"
                     "\"response\":{\"type\":\"string\"}},\"required\":[\"response\"],\"additionalProperties\":false}}}");
    if (cl_jschema_compile(&rf, &s, &e)) cl_die_err(&e);
    jv_free(rf);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: jsonmask-bench TOKENIZER VOCAB\n");
        return 2;
    }
    cl_err e = {0};
    size_t n = strlen(argv[1]);
    cl_tokenizer *t = n > 5 && !strcmp(argv[1] + n - 5, ".json") ? cl_tokenizer_load(argv[1], &e)
                    : cl_tokenizer_load_tiktoken(argv[1], NULL, NULL, NULL, 0, &e);
    if (!t) cl_die_err(&e);
    int vocab = atoi(argv[2]), eos = vocab - 1, reps = 5;
    long sink = 0;
    double full = 0, cached = 0, allow = 0;
    for (int r = 0; r < reps; r++) {
        cl_jschema *s = reply_schema();
        cl_jstate st[NP];
        for (int i = 0; i < NP; i++) {
            cl_jstate_init(&st[i]);
            if (cl_jstate_feed(s, &st[i], PREFIXES[i], strlen(PREFIXES[i]))) {
                fprintf(stderr, "jsonmask-bench: prefix %d is not valid\n", i);
                return 70;
            }
        }
        cl_jmask *m = cl_jmask_new(s, t, vocab, &eos, 1, &e); /* an empty cache */
        if (!m) cl_die_err(&e);
        double t0 = bench_cpu_now();
        for (int i = 0; i < NP; i++) sink += (long)(cl_jmask_bits(m, &st[i], -1)[0] & 1);
        double t1 = bench_cpu_now();
        for (int k = 0; k < 100; k++)
            for (int i = 0; i < NP; i++) sink += (long)(cl_jmask_bits(m, &st[i], -1)[0] & 1);
        double t2 = bench_cpu_now();
        for (int k = 0; k < 1000; k++)
            for (int i = 0; i < NP; i++) sink += cl_jmask_allows(m, &st[i], (k * 7919 + i) % vocab, -1);
        double t3 = bench_cpu_now();
        full += (t1 - t0) / NP;
        cached += (t2 - t1) / (100.0 * NP);
        allow += (t3 - t2) / (1000.0 * NP);
        cl_jmask_free(m);
    }
    cl_tokenizer_free(t);
    printf("vocab %d full_ms %.3f cached_us %.3f allows_us %.3f (%ld)\n", vocab, 1e3 * full / reps,
           1e6 * cached / reps, 1e6 * allow / reps, sink);
    return 0;
}
