/* greedy — our forward pass decoding greedily, to compare with llama.cpp on our GGUF exports.
 *
 *   greedy DIR [ADAPTER_DIR] [--steps N] [--engine] [--bf16] < prompts.jsonl
 * DIR holds config.json, safetensors and tokenizer.json; ADAPTER_DIR a PEFT adapter.  Prints
 * {"ids": [...prompt ids...], "greedy": [...N argmax ids...]} per JSON-string prompt, the same
 * shape tests/npm/llama-oracle.mjs prints.  Each step reruns the whole sequence (no KV cache:
 * the models are tiny and this keeps the check independent of any inference engine).  Like
 * llama.cpp's evaluation, decoding stops at an end-of-generation token (the texts llama.cpp
 * recognises), which is not printed.  --engine decodes with the continuous-batching engine of
 * local: instead (KV cache, every prompt of the input in one batch), --bf16 with bf16
 * projection weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "model/engine.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "model/weights.h"

static int end_of_generation(const cl_tokenizer *t, int32_t id)
{
    static const char *const eog[] = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                                      "<|eom_id|>"};
    const char *s = cl_tokenizer_token_text(t, id);
    for (size_t i = 0; s && i < sizeof eog / sizeof *eog; i++)
        if (strcmp(s, eog[i]) == 0)
            return 1;
    return 0;
}

typedef struct job {
    const cl_tokenizer *tok;
    cl_ids ids;
    size_t prompt;
} job;

static int engine_token(void *ctx, int token, const float *logits)
{
    (void)logits;
    job *j = ctx;
    if (end_of_generation(j->tok, token)) return 1;
    cl_ids_push(&j->ids, token);
    return 0;
}

static void print_ids(const cl_ids *ids, size_t prompt)
{
    printf("{\"ids\":[");
    for (size_t i = 0; i < prompt; i++)
        printf(i ? ",%d" : "%d", (int)ids->v[i]);
    printf("],\"greedy\":[");
    for (size_t i = prompt; i < ids->n; i++)
        printf(i > prompt ? ",%d" : "%d", (int)ids->v[i]);
    printf("]}\n");
}

static int die(const cl_err *e)
{
    fprintf(stderr, "greedy: %s\n", e->msg);
    return e->code ? e->code : 70;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *adapter = NULL;
    int steps = 8, engine = 0;
    cl_dtype dt = CL_F32;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--engine") == 0)
            engine = 1;
        else if (strcmp(argv[i], "--bf16") == 0)
            dt = CL_BF16;
        else if (!dir)
            dir = argv[i];
        else
            adapter = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "usage: greedy DIR [ADAPTER_DIR] [--steps N] < prompts.jsonl\n");
        return 2;
    }
    char path[4096];
    cl_err e = {0};
    cl_llama_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (cl_config_load(&cfg, path, &e))
        return die(&e);
    cl_llama *m = cl_llama_new(&cfg, dt, 0, &e);
    if (!m || cl_weights_load(m, dir, &e) || (adapter && cl_weights_load_adapter(m, adapter, NULL, &e)))
        return die(&e);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cl_tokenizer *tok = cl_tokenizer_load(path, &e);
    if (!tok)
        return die(&e);
    float *logits = NULL;
    char *line = NULL;
    size_t cap = 0, njobs = 0;
    ssize_t n;
    job *jobs = NULL;
    cl_batch *batch = engine ? cl_batch_new(m, (size_t)1 << 30, 64, &e) : NULL;
    if (engine && !batch)
        return die(&e);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        jv v = cl_json_parse(line, (size_t)n);
        if (jv_get_kind(v) != JV_KIND_STRING) {
            fprintf(stderr, "greedy: stdin: not a JSON string\n");
            return 65;
        }
        cl_ids ids = {0};
        if (cl_tokenizer_encode(tok, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)), 0, &ids, &e))
            return die(&e);
        jv_free(v);
        size_t prompt = ids.n;
        if (engine) { /* queued now, decoded together below */
            jobs = realloc(jobs, (njobs + 1) * sizeof *jobs);
            jobs[njobs] = (job){tok, ids, prompt};
            njobs++;
            continue;
        }
        for (int s = 0; s < steps; s++) {
            int t = (int)ids.n;
            if (cl_llama_forward(m, ids.v, NULL, NULL, 1, t, &e))
                return die(&e);
            logits = realloc(logits, (size_t)t * (size_t)cfg.vocab * sizeof *logits);
            cl_llama_logits(m, logits);
            const float *last = logits + (size_t)(t - 1) * (size_t)cfg.vocab;
            int best = 0;
            for (int k = 1; k < cfg.vocab; k++)
                if (last[k] > last[best])
                    best = k;
            if (end_of_generation(tok, best))
                break;
            cl_ids_push(&ids, best);
        }
        print_ids(&ids, prompt);
        cl_ids_free(&ids);
    }
    for (size_t i = 0; i < njobs; i++) {
        cl_gen_req q = {.prompt = jobs[i].ids.v, .n = (int)jobs[i].ids.n, .max_new = steps,
                        .on_token = engine_token, .ctx = &jobs[i]};
        if (!cl_batch_submit(batch, &q, &e))
            return die(&e);
    }
    while (batch && cl_batch_busy(batch))
        cl_batch_step(batch);
    for (size_t i = 0; i < njobs; i++) {
        print_ids(&jobs[i].ids, jobs[i].prompt);
        cl_ids_free(&jobs[i].ids);
    }
    free(jobs);
    cl_batch_free(batch);
    free(line);
    free(logits);
    cl_tokenizer_free(tok);
    cl_llama_free(m);
    return 0;
}
