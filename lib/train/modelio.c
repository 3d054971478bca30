/* modelio.c — model directories, adapters and exports for cl_llama. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "train/modelio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/files.h"
#include "core/json.h"
#include "model/bpe_train.h"
#include "model/engine.h"
#include "model/weights.h"
#include "core/stream.h"

char *cl_ft_path(char *out, size_t size, const char *dir, const char *name)
{
    size_t o = 0;
    for (const char *parts[3] = {dir, dir ? "/" : NULL, name}, **q = parts; q < parts + 3; q++)
        for (const char *c = *q; c && *c && o + 1 < size; c++) out[o++] = *c;
    out[o] = 0;
    return out;
}

int cl_ft_write_parts(const char *path, const void *const *parts, const size_t *lens, int n, cl_err *e)
{
    char tmp[4200];
    cl_ft_path(tmp, sizeof tmp - 4, NULL, path);
    strcat(tmp, ".tmp");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", tmp, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *p = parts[i];
        size_t left = lens[i];
        while (left) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int err = errno;
                close(fd);
                unlink(tmp);
                return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", tmp, strerror(err));
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (fsync(fd) || close(fd) || rename(tmp, path)) {
        int err = errno;
        unlink(tmp);
        return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", path, strerror(err));
    }
    return 0;
}

int cl_ft_write_file(const char *path, const void *data, size_t len, cl_err *e)
{
    return cl_ft_write_parts(path, &data, &len, 1, e);
}

void cl_ft_model_free(cl_ft_model *fm)
{
    cl_llama_free(fm->m);
    cl_tokenizer_free(fm->tok);
    free(fm->config_json);
    free(fm->tokenizer_json);
    memset(fm, 0, sizeof *fm);
}

static int set_pad(cl_ft_model *fm)
{
    const cl_llama_config *c = &fm->m->cfg;
    fm->pad_id = c->n_eos ? c->eos_ids[0] : 0;
    if (fm->pad_id < 0 || fm->pad_id >= c->vocab) fm->pad_id = 0;
    return 0;
}

static int load_tokenizer(cl_ft_model *fm, const char *path, cl_err *e)
{
    fm->tokenizer_json = cl_file_read(path, &fm->tokenizer_len, e);
    if (!fm->tokenizer_json) return -1;
    fm->tok = cl_tokenizer_from_json(fm->tokenizer_json, fm->tokenizer_len, path, e);
    if (!fm->tok) return -1;
    if (cl_tokenizer_vocab_size(fm->tok) > fm->m->cfg.vocab)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: the tokenizer has %d ids but the model's vocab_size is %d", path,
                          (int)cl_tokenizer_vocab_size(fm->tok), fm->m->cfg.vocab);
    return 0;
}

void cl_ft_model_set_src(cl_ft_model *fm, const char *dir)
{
    char abs[PATH_MAX];
    if (realpath(dir, abs) && strlen(abs) < sizeof fm->src)
        memcpy(fm->src, abs, strlen(abs) + 1);
    else
        cl_ft_path(fm->src, sizeof fm->src, NULL, dir);
}

int cl_ft_model_load(cl_ft_model *fm, const char *dir, cl_dtype dtype, int flags, cl_err *e)
{
    memset(fm, 0, sizeof *fm);
    char path[4200];
    struct stat st;
    cl_ft_path(path, sizeof path, dir, "config.json");
    if (stat(path, &st) != 0)
        return cl_err_set(e, CL_EXIT_NOINPUT, stat(dir, &st) != 0
            ? "%s: no such model directory: --model needs a local directory in the Hugging Face layout "
              "(config.json, *.safetensors, tokenizer.json); a hub name is not fetched: download it first, "
              "e.g. huggingface-cli download %s --local-dir models/NAME"
            : "%s has no config.json: --model needs a local directory in the Hugging Face layout "
              "(config.json, *.safetensors, tokenizer.json), e.g. from huggingface-cli download %s "
              "--local-dir models/NAME", dir, dir);
    cl_ft_model_set_src(fm, dir);
    cl_llama_config c;
    fm->config_json = cl_file_read(path, &fm->config_len, e);
    if (!fm->config_json || cl_config_parse(&c, fm->config_json, fm->config_len, path, e)) return -1;
    if (!(fm->m = cl_llama_new(&c, dtype, flags, e))) return -1;
    cl_ft_path(path, sizeof path, dir, "tokenizer.json");
    if (load_tokenizer(fm, path, e)) return -1;
    int rc = cl_weights_load(fm->m, dir, e);
    set_pad(fm);
    return rc;
}

/* ---- new models ------------------------------------------------------------------------- */

/* Corpus texts for the tokenizer trainer: each dialogue's contents, a row's "text", a JSON
 * string, or the line itself. */
static int read_corpus(const char *path, char ***texts, size_t **lens, size_t *n, cl_err *e)
{
    cl_reader *r = cl_reader_open(path, e);
    if (!r) return -1;
    size_t cap = 0, lcap = 0;
    cl_line line;
    int rc;
    while ((rc = cl_reader_next(r, &line, e)) == 1) {
        jv v = cl_json_parse(line.text, line.len);
        jv_kind k = jv_get_kind(v);
        jv ms = k == JV_KIND_OBJECT && cl_json_kind(&v, "messages") == JV_KIND_ARRAY ? cl_json_get(&v, "messages")
                                                                                      : jv_invalid();
        int nm = jv_is_valid(ms) ? jv_array_length(jv_copy(ms)) : 1;
        for (int i = 0; i < nm && rc == 1; i++) {
            jv m = jv_is_valid(ms) ? jv_array_get(jv_copy(ms), i) : jv_null();
            const char *s = jv_is_valid(ms) ? (jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "content") : NULL)
                            : k == JV_KIND_STRING ? jv_string_value(v)
                            : k == JV_KIND_OBJECT && cl_json_str(&v, "text") ? cl_json_str(&v, "text")
                                                                             : line.text;
            if (s && (cl_grow((void **)texts, &cap, *n + 1, sizeof **texts) ||
                      cl_grow((void **)lens, &lcap, *n + 1, sizeof **lens) || !((*texts)[*n] = strdup(s))))
                rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            else if (s)
                (*lens)[(*n)++] = strlen(s);
            jv_free(m);
        }
        jv_free(ms);
        jv_free(v);
    }
    cl_reader_close(r);
    return rc;
}

/* The Llama-3 special tokens, so the chat format of a new model is llama3. */
static const cl_bpe_added llama3_specials[] = {
    {"<|begin_of_text|>", 1, 0, 0}, {"<|end_of_text|>", 1, 0, 0}, {"<|start_header_id|>", 1, 0, 0},
    {"<|end_header_id|>", 1, 0, 0}, {"<|eot_id|>", 1, 0, 0},
};

int cl_ft_model_init(cl_ft_model *fm, const char *config_path, const char *tokenizer_path, const char *corpus_path,
                     int corpus_vocab, uint64_t seed, int full, cl_err *e)
{
    memset(fm, 0, sizeof *fm);
    size_t len;
    char *text = cl_file_read(config_path, &len, e);
    if (!text) return -1;
    jv cfg = cl_json_parse(text, len);
    free(text);
    if (jv_get_kind(cfg) != JV_KIND_OBJECT) {
        jv_free(cfg);
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: not a JSON object", config_path);
    }
    if (tokenizer_path) {
        fm->tokenizer_json = cl_file_read(tokenizer_path, &fm->tokenizer_len, e);
    } else {
        char **texts = NULL;
        size_t *lens = NULL, n = 0;
        if (read_corpus(corpus_path, &texts, &lens, &n, e) == 0) {
            cl_bpe_train_opts o = {.vocab_size = (size_t)corpus_vocab, .ignore_merges = 1,
                                   .bos = "<|begin_of_text|>", .added = llama3_specials,
                                   .n_added = sizeof llama3_specials / sizeof *llama3_specials};
            fm->tokenizer_json = cl_bpe_train((const char *const *)texts, lens, n, &o, &fm->tokenizer_len, e);
        }
        for (size_t i = 0; i < n; i++) free(texts[i]);
        free(texts);
        free(lens);
    }
    if (!fm->tokenizer_json ||
        !(fm->tok = cl_tokenizer_from_json(fm->tokenizer_json, fm->tokenizer_len,
                                           tokenizer_path ? tokenizer_path : "trained tokenizer", e))) {
        jv_free(cfg);
        return -1;
    }
    /* what the tokenizer decides unless the config says otherwise */
    if (!cl_json_has(&cfg, "vocab_size")) cfg = cl_json_set_num(cfg, "vocab_size", cl_tokenizer_vocab_size(fm->tok));
    if (!cl_json_has(&cfg, "model_type")) cfg = cl_json_set_str(cfg, "model_type", "llama");
    if (!cl_json_has(&cfg, "architectures"))
        cfg = cl_json_set(cfg, "architectures",
                          JV_ARRAY(jv_string(strcmp(cl_json_str(&cfg, "model_type"), "qwen2") ? "LlamaForCausalLM"
                                                                                              : "Qwen2ForCausalLM")));
    if (!cl_json_has(&cfg, "hidden_act")) cfg = cl_json_set_str(cfg, "hidden_act", "silu");
    if (!cl_json_has(&cfg, "torch_dtype")) cfg = cl_json_set_str(cfg, "torch_dtype", "float32");
    int bos = cl_tokenizer_token_id(fm->tok, "<|begin_of_text|>"), eot = cl_tokenizer_token_id(fm->tok, "<|eot_id|>"),
        eos = cl_tokenizer_token_id(fm->tok, "<|end_of_text|>");
    if (!cl_json_has(&cfg, "bos_token_id") && bos >= 0) cfg = cl_json_set_num(cfg, "bos_token_id", bos);
    if (!cl_json_has(&cfg, "eos_token_id") && eot >= 0)
        cfg = cl_json_set(cfg, "eos_token_id", eos >= 0 ? JV_ARRAY(jv_number(eot), jv_number(eos)) : jv_number(eot));
    fm->config_json = cl_json_dump(&cfg, &fm->config_len);
    jv_free(cfg);
    cl_llama_config c;
    if (!fm->config_json || cl_config_parse(&c, fm->config_json, fm->config_len, config_path, e)) return -1;
    if (cl_tokenizer_vocab_size(fm->tok) > c.vocab)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: vocab_size %d is smaller than the tokenizer's %d ids", config_path,
                          c.vocab, (int)cl_tokenizer_vocab_size(fm->tok));
    if (!(fm->m = cl_llama_new(&c, CL_F32, full, e))) return -1;
    int n;
    cl_tensor *ts = cl_llama_tensors(fm->m, &n);
    double resid = 0.02 / sqrt(2.0 * c.layers);
    for (int i = 0; i < n; i++) {
        cl_tensor *t = &ts[i];
        float *x = t->data;
        uint64_t s = cl_hash64(t->name, strlen(t->name), seed);
        int out_proj = strstr(t->name, "o_proj.weight") || strstr(t->name, "down_proj.weight");
        /* each value depends on (seed, name, j) only: a 1B model starts in seconds, not a minute */
#pragma omp parallel for if (t->numel > 65536)
        for (long j = 0; j < t->numel; j++)
            x[j] = t->ndim == 1 ? (strstr(t->name, ".bias") ? 0.0f : 1.0f)
                                : (float)(cl_hash_gauss(s, (uint64_t)j) * (out_proj ? resid : 0.02));
    }
    set_pad(fm);
    return 0;
}

/* ---- chat format ------------------------------------------------------------------------ */

int cl_ft_model_set_format(cl_ft_model *fm, const char *name, cl_err *e)
{
    if (name && strcmp(name, "auto")) {
        int f = cl_chat_format_parse(name);
        if (f < 0) return cl_err_set(e, CL_EXIT_USAGE, "unknown chat format \"%s\" (llama3, qwen2, qwen2.5, qwen3, auto)", name);
        fm->format = (cl_chat_format)f;
        return 0;
    }
    char path[4200];
    cl_ft_path(path, sizeof path, fm->src, "tokenizer_config.json");
    size_t len;
    char *tc = fm->src[0] ? cl_file_read(path, &len, NULL) : NULL;
    int f = cl_chat_format_detect(fm->tok, tc);
    free(tc);
    if (f < 0)
        return cl_err_set(e, CL_EXIT_CONFIG, "%s: the tokenizer has neither Llama-3 headers nor ChatML tokens; "
                          "name a chat format with --chat", fm->src);
    fm->format = (cl_chat_format)f;
    return 0;
}

int cl_ft_model_add_lora(cl_ft_model *fm, const cl_lora_config *c, cl_err *e)
{
    if (cl_lora_add(fm->m, c, e)) return -1;
    fm->lora = *c;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------- */

static char *chat_template(const cl_ft_model *fm);

static int copy_if_present(const char *src_dir, const char *dir, const char *name, cl_err *e)
{
    char p[4200];
    cl_ft_path(p, sizeof p, src_dir, name);
    size_t len;
    char *b = cl_file_read(p, &len, NULL);
    if (!b) return 0;
    cl_ft_path(p, sizeof p, dir, name);
    int rc = cl_ft_write_file(p, b, len, e);
    free(b);
    return rc;
}

int cl_ft_model_save(cl_ft_model *fm, const char *dir, cl_err *e)
{
    if (mkdir(dir, 0777) && errno != EEXIST) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", dir, strerror(errno));
    char p[4200];
    int rc = cl_weights_save(fm->m, dir, 0, e);
    cl_ft_path(p, sizeof p, dir, "config.json");
    if (!rc) rc = cl_ft_write_file(p, fm->config_json, fm->config_len, e);
    cl_ft_path(p, sizeof p, dir, "tokenizer.json");
    if (!rc) rc = cl_ft_write_file(p, fm->tokenizer_json, fm->tokenizer_len, e);
    static const char *const extra[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof extra / sizeof *extra && !rc && fm->src[0]; i++)
        rc = copy_if_present(fm->src, dir, extra[i], e);
    cl_ft_path(p, sizeof p, dir, "tokenizer_config.json");
    struct stat st;
    if (!rc && stat(p, &st) != 0) {
        /* A new model (or a source without one): the chat template the model was trained
         * with, so that transformers, vLLM and the GGUF export format chats as training did. */
        char *tmpl = chat_template(fm);
        if (tmpl) {
            jv tc = JV_OBJECT(jv_string("chat_template"), jv_string(tmpl), jv_string("tokenizer_class"),
                              jv_string("PreTrainedTokenizerFast"), jv_string("model_max_length"),
                              jv_number(fm->m->cfg.max_pos));
            size_t len;
            char *text = cl_json_dump(&tc, &len);
            jv_free(tc);
            rc = text ? cl_ft_write_file(p, text, len, e) : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
            free(text);
            free(tmpl);
        }
    }
    return rc;
}

int cl_ft_model_save_adapter(cl_ft_model *fm, const char *dir, cl_err *e)
{
    if (mkdir(dir, 0777) && errno != EEXIST) return cl_err_set(e, CL_EXIT_IOERR, "%s: %s", dir, strerror(errno));
    return cl_weights_save_adapter(fm->m, dir, fm->src, &fm->lora, e);
}

int cl_ft_model_load_adapter(cl_ft_model *fm, const char *dir, cl_err *e)
{
    return cl_weights_load_adapter(fm->m, dir, &fm->lora, e);
}

/* ---- GGUF ------------------------------------------------------------------------------- */

/* The model's chat template: its source's tokenizer_config.json, else the one of the format it is
 * trained in (cl_chat_jinja) when its tokenizer has that format's special tokens. */
static char *chat_template(const cl_ft_model *fm)
{
    char p[4200];
    cl_ft_path(p, sizeof p, fm->src, "tokenizer_config.json");
    size_t len;
    char *b = fm->src[0] ? cl_file_read(p, &len, NULL) : NULL;
    char *out = NULL;
    if (b) {
        jv v = cl_json_parse(b, len);
        free(b);
        const char *t = jv_get_kind(v) == JV_KIND_OBJECT ? cl_json_str(&v, "chat_template") : NULL;
        out = t ? strdup(t) : NULL;
        jv_free(v);
        return out;
    }
    const char *mark = fm->format == CL_CHAT_LLAMA3 ? "<|start_header_id|>" : "<|im_start|>";
    const char *t = cl_chat_jinja(fm->format);
    return t && cl_tokenizer_token_id(fm->tok, mark) >= 0 ? strdup(t) : NULL;
}

int cl_ft_model_export_gguf(cl_ft_model *fm, cl_gguf_matrices as, const char *path, cl_err *e)
{
    char *tmpl = chat_template(fm);
    int rc = cl_weights_export_gguf(fm->m, fm->tok, tmpl, as, path, e);
    free(tmpl);
    return rc;
}

int cl_ft_model_export_gguf_lora(cl_ft_model *fm, const char *path, cl_err *e)
{
    return cl_weights_export_gguf_lora(fm->m, &fm->lora, path, e);
}

/* ---- greedy decoding -------------------------------------------------------------------- */

int cl_ft_generate_greedy(cl_ft_model *fm, const int *ids, int n, int max_new, cl_ids *out, cl_err *e)
{
    cl_llama *m = fm->m;
    int cap = n + max_new <= m->cfg.max_pos ? n + max_new : m->cfg.max_pos;
    if (n >= cap) return 0;
    cl_engine *g = cl_engine_new(m, cap, e);
    int *gen = malloc(sizeof(int) * (size_t)(cap - n)), rc = 0;
    if (!g || !gen) rc = g ? cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory") : -1;
    cl_sampler greedy = {.temperature = 0};
    int k = rc ? -1 : cl_engine_generate(g, ids, n, cap - n, m->cfg.eos_ids, m->cfg.n_eos, &greedy, 0, gen, e);
    for (int i = 0; i < k && !rc; i++)
        if (cl_ids_push(out, gen[i])) rc = cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(gen);
    cl_engine_free(g);
    return k < 0 ? -1 : rc;
}
