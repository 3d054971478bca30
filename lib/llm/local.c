/* The "local:DIR" backend: a model directory run in this process by the continuous-batching
 * engine (model/engine.h), one of the loop's CPU backends (llm/backend.h): start() renders the
 * chat template and queues one engine sequence per choice, step() advances every sequence of
 * the model by one batched forward, and a call ends from step() once all its choices have.
 *
 * Spec: DIR[+adapter=ADIR][+bf16][+chat=FORMAT].  DIR is a model directory (config.json,
 * safetensors, tokenizer.json, optionally tokenizer_config.json), or a PEFT adapter directory
 * whose adapter_config.json names its base (what cl-finetune writes as RUN/final).  Adapters
 * are merged into a private copy of the base at load; roles that name the same model (same
 * files, adapter, dtype and format) share one copy of the weights and one engine, so their
 * sequences batch together.
 *
 * The identity hashed into the cache key is a fingerprint of what answers: config, tokenizer,
 * tokenizer_config (the template), chat format, dtype and every weight as loaded (adapters
 * merged), so a new checkpoint never replays an old one's answers while a copied or moved one
 * still does.  Local replies are cached like HTTP ones: they cost nothing, but recomputing them
 * costs time, and resume depends on them. */
#include "llm/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/files.h"
#include "core/json.h"
#include "core/sha256.h"
#include "model/chat.h"
#include "model/config.h"
#include "model/device.h"
#include "model/engine.h"
#include "model/jsonmask.h"
#include "model/lora.h"
#include "model/peft.h"
#include "model/weights.h"

#define DEFAULT_KV_MB 1024
#define MAX_STOP 4
#define MAX_FORMATS 16 /* compiled response formats a model keeps (with their mask caches) */

/* A response_format compiled for one model's vocabulary, shared by the calls that send it. */
struct lformat {
    char *key;                 /* the response_format as JSON text */
    cl_jmask *jm;
    int refs;                  /* calls in flight using it */
    struct lformat *next;
};

/* One loaded model, shared by every role that names it. */
struct lmodel {
    char *key;                 /* canonical base | adapter | dtype | chat */
    int refs;
    cl_llama *m;
    cl_tokenizer *tok;
    cl_chat_format format;
    int end_ids[CL_MAX_EOS + 2], n_end; /* ids that end a reply: config eos + end of turn */
    char fingerprint[65];
    cl_batch *batch;
    struct lformat *formats;
    int nformats;
    struct lmodel *next;
};

static struct lmodel *models; /* the process's loaded models (the loop is single-threaded) */

struct lrole {
    struct lmodel *lm;
    char *name;
};

struct lcall;

struct lchoice {
    struct lcall *call;
    cl_gen *g;
    cl_buf text;
    size_t kept;               /* bytes of text that are the reply (stop strings cut it) */
    int tokens, finish, ended;
    jv logprobs;               /* "logprobs": true: {token, logprob} of every sampled token */
    cl_jstate js;              /* with a response_format: where the reply is in the document */
};

struct lcall {
    cl_llm_call *c;
    struct lrole *r;
    char *stop[MAX_STOP];
    int nstop, nchoice, nended, logprobs;
    int max_new;               /* tokens a choice may sample (max_tokens within the context) */
    long prompt_tokens;
    struct lformat *fmt;       /* response_format's constraint, or NULL */
    struct lchoice ch[];
};

/* ---- loading ------------------------------------------------------------------------- */

static int is_file(const char *dir, const char *name)
{
    char *p = cl_path_join(dir, name);
    struct stat st;
    int ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

/* Words of memory hashed four lanes at a time: the weights are hundreds of MB and a byte-wise
 * hash would add seconds to every start; this one runs at memory speed. */
static uint64_t hash_words(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h[4] = {seed ^ 0x9e3779b97f4a7c15ULL, seed + 1, seed + 2, seed + 3};
    size_t n = len / 32;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, p + 32 * i + 8 * (size_t)j, 8);
            h[j] = (h[j] ^ w) * 0x100000001b3ULL;
            h[j] ^= h[j] >> 29;
        }
    uint64_t out = cl_hash64(p + 32 * n, len - 32 * n, len);
    for (int j = 0; j < 4; j++) out = cl_hash64(&h[j], 8, out);
    return out;
}

static void hash_text(cl_sha256 *s, const char *label, const char *text, size_t len)
{
    uint64_t n = len;
    cl_sha256_update(s, label, strlen(label) + 1);
    cl_sha256_update(s, &n, sizeof n);
    if (len) cl_sha256_update(s, text, len);
}

static void fingerprint(struct lmodel *lm, const char *config, size_t clen, const char *tokjson, size_t tlen,
                        const char *tokcfg, size_t tclen)
{
    cl_sha256 s;
    cl_sha256_init(&s);
    hash_text(&s, "cl-local 1", "", 0);
    hash_text(&s, "config.json", config, clen);
    hash_text(&s, "tokenizer.json", tokjson, tlen);
    hash_text(&s, "tokenizer_config.json", tokcfg, tokcfg ? tclen : 0);
    const char *fmt = cl_chat_format_name(lm->format);
    hash_text(&s, "chat", fmt, strlen(fmt));
    int n;
    cl_tensor *ts = cl_llama_tensors(lm->m, &n);
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)ts[i].numel * (ts[i].dtype == CL_BF16 ? 2 : 4);
        uint64_t h = hash_words(ts[i].data, bytes, (uint64_t)ts[i].dtype);
        hash_text(&s, ts[i].name, (const char *)&h, sizeof h);
    }
    unsigned char d[32];
    cl_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(lm->fingerprint + 2 * i, 3, "%02x", d[i]);
}

static void lmodel_free(struct lmodel *lm)
{
    if (!lm) return;
    while (lm->formats) {
        struct lformat *f = lm->formats;
        lm->formats = f->next;
        cl_jmask_free(f->jm);
        free(f->key);
        free(f);
    }
    cl_batch_free(lm->batch);
    cl_tokenizer_free(lm->tok);
    cl_llama_free(lm->m);
    free(lm->key);
    free(lm);
}

static void add_end(struct lmodel *lm, int id)
{
    if (id < 0 || id >= lm->m->cfg.vocab) return;
    for (int i = 0; i < lm->n_end; i++)
        if (lm->end_ids[i] == id) return;
    if (lm->n_end < (int)(sizeof lm->end_ids / sizeof *lm->end_ids)) lm->end_ids[lm->n_end++] = id;
}

/* A file the model needs: read, or an error naming it (66 missing, as cl_file_read says). */
static char *need_file(const char *dir, const char *name, size_t *len, cl_err *e)
{
    char *p = cl_path_join(dir, name);
    if (!p) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        return NULL;
    }
    char *text = cl_file_read(p, len, e);
    free(p);
    return text;
}

/* The model, tokenizer and chat format; the engine comes after the device (start_engine).  A
 * model for the CPU kernels owns its weights (CL_LLAMA_DECODE); one bound for a device reads
 * them from the file mapping in place, which the page cache can take back once uploaded. */
static struct lmodel *lmodel_load(const char *base, const char *adapter, cl_dtype dt, int chat, int on_device,
                                  cl_err *e)
{
    struct lmodel *lm = calloc(1, sizeof *lm);
    size_t clen = 0, tlen = 0, tclen = 0;
    char *config = NULL, *tokjson = NULL, *tokcfg = NULL, *cpath = cl_path_join(base, "config.json");
    char *tpath = cl_path_join(base, "tokenizer.json");
    cl_llama_config cfg;
    int rc = -1;
    if (!lm || !cpath || !tpath) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    if (!(config = need_file(base, "config.json", &clen, e))) goto out;
    if (cl_config_parse(&cfg, config, clen, cpath, e)) {
        e->code = CL_EXIT_DATAERR; /* a malformed file in the model directory, not a flag */
        goto out;
    }
    if (!(tokjson = need_file(base, "tokenizer.json", &tlen, e))) goto out;
    if (!(lm->tok = cl_tokenizer_from_json(tokjson, tlen, tpath, e))) {
        if (e->code == CL_EXIT_CONFIG) e->code = CL_EXIT_DATAERR;
        goto out;
    }
    if (cl_tokenizer_vocab_size(lm->tok) > cfg.vocab) {
        cl_err_set(e, CL_EXIT_DATAERR, "%s: the tokenizer has %d ids but the model's vocab_size is %d", tpath,
                   (int)cl_tokenizer_vocab_size(lm->tok), cfg.vocab);
        goto out;
    }
    tokcfg = is_file(base, "tokenizer_config.json") ? need_file(base, "tokenizer_config.json", &tclen, e) : NULL;
    int f = chat >= 0 ? chat : cl_chat_format_detect(lm->tok, tokcfg);
    if (f < 0) {
        cl_err_set(e, CL_EXIT_CONFIG, "%s: the tokenizer has neither Llama-3 headers nor ChatML tokens; name the "
                   "format in the spec: local:DIR+chat=llama3", tpath);
        goto out;
    }
    lm->format = (cl_chat_format)f;
    /* adapters are merged into fp32 weights, then rounded if bf16 was asked for */
    int flags = on_device ? 0 : CL_LLAMA_DECODE;
    if (!(lm->m = cl_llama_new(&cfg, adapter ? CL_F32 : dt, flags, e)) || cl_weights_load(lm->m, base, e))
        goto out;
    if (adapter) {
        if (cl_weights_load_adapter(lm->m, adapter, NULL, e)) goto out;
        cl_lora_merge(lm->m);
        if (dt == CL_BF16) {
            cl_llama *b16 = cl_llama_new(&cfg, CL_BF16, flags, e);
            int n16, n32;
            cl_tensor *t16 = b16 ? cl_llama_tensors(b16, &n16) : NULL, *t32 = cl_llama_tensors(lm->m, &n32);
            if (!b16) goto out;
            for (int i = 0; i < n16; i++) {
                const float *src = t32[i].data;
                if (t16[i].dtype == CL_F32)
                    memcpy(t16[i].data, src, sizeof(float) * (size_t)t16[i].numel);
                else
                    for (long j = 0; j < t16[i].numel; j++) ((uint16_t *)t16[i].data)[j] = cl_f32_to_bf16(src[j]);
            }
            cl_llama_free(lm->m);
            lm->m = b16;
        }
    }
    for (int i = 0; i < cfg.n_eos; i++) add_end(lm, cfg.eos_ids[i]);
    add_end(lm, cl_tokenizer_token_id(lm->tok, lm->format == CL_CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>"));
    fingerprint(lm, config, clen, tokjson, tlen, tokcfg, tclen);
    rc = 0;
out:
    free(config);
    free(tokjson);
    free(tokcfg);
    free(cpath);
    free(tpath);
    if (rc) {
        lmodel_free(lm);
        return NULL;
    }
    return lm;
}

/* The base named by an adapter directory's adapter_config.json: as written (relative to the
 * working directory), else relative to the adapter directory. */
static char *adapter_base(const char *adapter, cl_err *e)
{
    size_t len;
    char *text = need_file(adapter, "adapter_config.json", &len, e), *cpath = cl_path_join(adapter, "adapter_config.json");
    cl_peft_config pc;
    char *out = NULL;
    if (text && cpath && cl_peft_config_parse(text, len, cpath, &pc, e) == 0) {
        if (!pc.base_model[0])
            cl_err_set(e, CL_EXIT_DATAERR, "%s: base_model_name_or_path is empty: name the base as "
                       "local:BASE+adapter=%s", cpath, adapter);
        else if (pc.base_model[0] != '/' && !is_file(pc.base_model, "config.json") &&
                 (out = cl_path_join(adapter, pc.base_model)) && is_file(out, "config.json"))
            ;
        else {
            free(out);
            out = strdup(pc.base_model);
        }
    }
    free(text);
    free(cpath);
    return out;
}

/* ---- the spec -------------------------------------------------------------------------- */

/* +device=cuda[:N]: the weights go to the GPU once and the batched decode's products run there
 * (model/device.h); frees lm when that fails. */
static int attach_device(struct lmodel *lm, const char *name, const char *role, const char *arg, cl_err *e)
{
    cl_device d;
    int rc = cl_device_open(&d, name, e);
    if (rc == 0) rc = d.attach(&d, lm->m, e);
    if (rc < 0) {
        cl_err inner = *e;
        cl_err_set(e, inner.code, "--%s local:%s: %s", role, arg, inner.msg);
        lmodel_free(lm);
    }
    return rc < 0 ? -1 : 0;
}

/* The engine, once the model is where it computes (on a device, or packed for the CPU kernels
 * when the engine starts); frees lm when that fails. */
static int start_engine(struct lmodel *lm, size_t kv_bytes, cl_err *e)
{
    if ((lm->batch = cl_batch_new(lm->m, kv_bytes, 64, e))) return 0;
    lmodel_free(lm);
    return -1;
}

/* Unlinks and frees a shared model no role holds any more. */
static void drop_unused(struct lmodel *lm)
{
    if (lm->refs) return;
    struct lmodel **p = &models;
    while (*p != lm) p = &(*p)->next;
    *p = lm->next;
    lmodel_free(lm);
}

static int lopen(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg, void **self,
                 char **identity, cl_err *e)
{
    (void)llm;
    char *spec = strdup(arg), *adapter = NULL, *base = NULL, *device = NULL;
    cl_dtype dt = CL_F32;
    int chat = -1, rcode = -1;
    if (!spec) return cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    char *plus = strchr(spec, '+'), *opt = plus ? plus + 1 : NULL;
    if (plus) *plus = 0;
    while (opt) {
        char *next = strchr(opt, '+');
        if (next) *next++ = 0;
        if (strncmp(opt, "adapter=", 8) == 0 && opt[8])
            adapter = opt + 8;
        else if (strcmp(opt, "bf16") == 0)
            dt = CL_BF16;
        else if (strncmp(opt, "chat=", 5) == 0 && cl_chat_format_parse(opt + 5) >= 0)
            chat = cl_chat_format_parse(opt + 5);
        else if (strncmp(opt, "device=", 7) == 0 && cl_device_parse(opt + 7, &(int){0}, NULL) >= 0)
            device = opt + 7;
        else {
            cl_err_set(e, CL_EXIT_CONFIG, "--%s local:%s: unknown option '+%s' (known: +adapter=DIR, +bf16, "
                       "+chat=llama3|qwen2|qwen2.5|qwen3, +device=cpu|cuda|cuda:N)", rc->name, arg, opt);
            goto out;
        }
        opt = next;
    }
    if (!*spec) {
        cl_err_set(e, CL_EXIT_CONFIG, "--%s local: needs a model directory, e.g. local:run/final", rc->name);
        goto out;
    }
    struct stat st;
    if (stat(spec, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cl_err_set(e, CL_EXIT_NOINPUT, "--%s local:%s: %s is not a directory", rc->name, arg, spec);
        goto out;
    }
    if (!adapter && !is_file(spec, "config.json") && is_file(spec, "adapter_config.json")) {
        adapter = spec; /* a PEFT directory on its own: its config names the base */
        if (!(base = adapter_base(adapter, e))) goto out;
    } else if (!(base = strdup(spec))) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    /* the same directories however they are spelled: device and inode */
    struct stat sb, sa = {0};
    if (stat(base, &sb) != 0) {
        cl_err_set(e, CL_EXIT_NOINPUT, "--%s local:%s: base model %s is not there", rc->name, arg, base);
        goto out;
    }
    if (adapter) stat(adapter, &sa);
    char *key = malloc(128);
    if (!key) {
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    snprintf(key, 128, "%llu:%llu|%llu:%llu|%d|%d|%s", (unsigned long long)sb.st_dev, (unsigned long long)sb.st_ino,
             (unsigned long long)sa.st_dev, (unsigned long long)sa.st_ino, (int)dt, chat, device ? device : "cpu");
    struct lmodel *lm = models;
    while (lm && strcmp(lm->key, key)) lm = lm->next;
    if (!lm) {
        double mb = cfg->local_kv_mb > 0 ? cfg->local_kv_mb : DEFAULT_KV_MB;
        int on_device = device && strcmp(device, "cpu") != 0;
        if (!(lm = lmodel_load(base, adapter, dt, chat, on_device, e)) ||
            (device && attach_device(lm, device, rc->name, arg, e)) || start_engine(lm, (size_t)(mb * 1048576.0), e)) {
            free(key);
            goto out;
        }
        lm->key = key;
        lm->next = models;
        models = lm;
    } else
        free(key);
    struct lrole *r = calloc(1, sizeof *r);
    size_t ilen = 128;
    char *id = malloc(ilen);
    if (!r || !id || !(r->name = strdup(rc->name))) {
        free(r);
        free(id);
        drop_unused(lm); /* a model loaded just now for this role */
        cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
        goto out;
    }
    lm->refs++;
    r->lm = lm;
    /* what answers: the fingerprint (never the path: a moved checkpoint is the same model) */
    /* the GPU rounds the products' inputs to bf16: its replies are its own, not the CPU's */
    snprintf(id, ilen, "local %s %s%s", lm->fingerprint, cl_chat_format_name(lm->format), lm->m->dev ? " cuda" : "");
    *identity = id;
    *self = r;
    rcode = 0;
out:
    free(base);
    free(spec);
    return rcode;
}

static void lclose(void *self)
{
    struct lrole *r = self;
    if (!r) return;
    r->lm->refs--;
    drop_unused(r->lm);
    free(r->name);
    free(r);
}

/* ---- calls ----------------------------------------------------------------------------- */

/* Ends the attempt with a final (not retried) error: the request cannot be run as it is. */
static void fail(cl_llm_call *c, int status, const char *msg)
{
    cl_llm_outcome o = {.response = jv_invalid(), .status = status, .kind = CL_LLM_FAIL_HTTP};
    snprintf(o.error, sizeof o.error, "%.500s", msg);
    cl_llm_attempt_done(c, &o);
}

static void lcall_free(struct lcall *lc)
{
    if (lc->fmt) lc->fmt->refs--;
    for (int i = 0; i < lc->nchoice; i++) {
        free(lc->ch[i].text.p);
        if (lc->logprobs) jv_free(lc->ch[i].logprobs);
    }
    for (int i = 0; i < lc->nstop; i++) free(lc->stop[i]);
    free(lc);
}

static int is_end(const struct lmodel *lm, int tok)
{
    for (int i = 0; i < lm->n_end; i++)
        if (lm->end_ids[i] == tok) return 1;
    return 0;
}

/* The sampled token's log-probability under the model's own distribution (the raw logits:
 * temperature 1, before top-k and top-p), which a training forward of the same reply computes
 * too: GRPO's "old" policy.  With a response_format that distribution is the one sampled from:
 * the tokens of allow (NULL: all), renormalised.  In double, as the training losses sum it. */
static double token_logprob(const float *logits, int vocab, int tok, const uint64_t *allow)
{
    float mx = logits[tok];
    for (int i = 0; i < vocab; i++)
        if ((!allow || (allow[i / 64] >> (i % 64) & 1)) && logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < vocab; i++)
        if (!allow || (allow[i / 64] >> (i % 64) & 1)) z += exp((double)(logits[i] - mx));
    return (double)(logits[tok] - mx) - log(z);
}

/* Appends the token's bytes (control tokens are not text, as servers skip them) and ends the
 * choice at an end-of-reply token or once a stop string appears (the string itself cut off,
 * as OpenAI does).  With "logprobs" the token and its log-prob are recorded, the end-of-reply
 * token included (it is sampled, and trained, like any other). */
static int on_token(void *ctx, int tok, const float *logits)
{
    struct lchoice *ch = ctx;
    struct lmodel *lm = ch->call->r->lm;
    cl_jmask *jm = ch->call->fmt ? ch->call->fmt->jm : NULL;
    int budget = ch->call->max_new - ch->tokens++;
    if (ch->call->logprobs) {
        size_t n;
        const char *bytes = cl_tokenizer_token_bytes(lm->tok, tok, &n);
        const uint64_t *allow = jm ? cl_jmask_bits(jm, &ch->js, budget) : NULL;
        jv t = JV_OBJECT(jv_string("token"), jv_string_sized(bytes ? bytes : "", bytes ? (int)n : 0),
                         jv_string("logprob"), jv_number(token_logprob(logits, lm->m->cfg.vocab, tok, allow)));
        ch->logprobs = jv_array_append(ch->logprobs, t);
    }
    if (jm) cl_jmask_advance(jm, &ch->js, tok); /* the sampler allowed tok: it fits */
    if (is_end(lm, tok)) return 1;
    if (cl_tokenizer_token_kind(lm->tok, tok) == CL_TOKEN_SPECIAL) return 0;
    size_t n, before = ch->text.n;
    const char *bytes = cl_tokenizer_token_bytes(lm->tok, tok, &n);
    if (bytes) cl_buf_put(&ch->text, bytes, n);
    ch->kept = ch->text.n;
    struct lcall *lc = ch->call;
    for (int i = 0; i < lc->nstop && ch->text.p; i++) {
        size_t sl = strlen(lc->stop[i]), from = before >= sl ? before - sl + 1 : 0;
        for (size_t at = from; at + sl <= ch->text.n; at++)
            if (memcmp(ch->text.p + at, lc->stop[i], sl) == 0) {
                if (at < ch->kept) ch->kept = at;
                break;
            }
    }
    return ch->kept < ch->text.n;
}

static void reply(struct lcall *lc)
{
    jv choices = jv_array();
    long completion = 0;
    for (int i = 0; i < lc->nchoice; i++) {
        struct lchoice *ch = &lc->ch[i];
        completion += ch->tokens;
        jv msg = JV_OBJECT(jv_string("role"), jv_string("assistant"), jv_string("content"),
                           jv_string_sized(ch->text.p ? ch->text.p : "", (int)ch->kept));
        jv one = JV_OBJECT(jv_string("index"), jv_number(i), jv_string("message"), msg, jv_string("finish_reason"),
                           jv_string(ch->finish == CL_GEN_LENGTH ? "length" : "stop"));
        if (lc->logprobs) {
            /* OpenAI's shape; the list moves into the reply */
            one = cl_json_set(one, "logprobs", JV_OBJECT(jv_string("content"), ch->logprobs));
            ch->logprobs = jv_null();
        }
        choices = jv_array_append(choices, one);
    }
    jv usage = JV_OBJECT(jv_string("prompt_tokens"), jv_number((double)lc->prompt_tokens),
                         jv_string("completion_tokens"), jv_number((double)completion), jv_string("total_tokens"),
                         jv_number((double)(lc->prompt_tokens + completion)));
    jv resp = JV_OBJECT(jv_string("object"), jv_string("chat.completion"), jv_string("model"),
                        jv_string(lc->r->lm->fingerprint), jv_string("choices"), choices, jv_string("usage"), usage);
    cl_llm_call *c = lc->c;
    *cl_llm_call_backend_data(c) = NULL;
    lcall_free(lc);
    cl_llm_outcome o = {.response = resp};
    cl_llm_attempt_done(c, &o);
}

static void on_end(void *ctx, int reason)
{
    struct lchoice *ch = ctx;
    struct lcall *lc = ch->call;
    ch->finish = ch->kept < ch->text.n ? CL_GEN_STOP : reason;
    ch->ended = 1;
    ch->g = NULL;
    if (++lc->nended == lc->nchoice) reply(lc);
}

static int choice_allows(void *ctx, int tok)
{
    struct lchoice *ch = ctx;
    return cl_jmask_allows(ch->call->fmt->jm, &ch->js, tok, ch->call->max_new - ch->tokens);
}

static const uint64_t *choice_mask(void *ctx)
{
    struct lchoice *ch = ctx;
    return cl_jmask_bits(ch->call->fmt->jm, &ch->js, ch->call->max_new - ch->tokens);
}

/* The model's compiled form of the request's response_format: NULL with *e clear when there is
 * none (or it is "text"), NULL with *e set when it cannot be honoured.  Compiled forms are kept
 * (with their mask caches) while fewer than MAX_FORMATS, the unused ones dropped beyond. */
static struct lformat *format_of(struct lmodel *lm, const jv *params, cl_err *e)
{
    jv rf = cl_json_get(params, "response_format");
    if (!jv_is_valid(rf)) {
        jv_free(rf);
        return NULL;
    }
    char *key = cl_json_dump(&rf, NULL);
    struct lformat *f = lm->formats;
    while (f && key && strcmp(f->key, key)) f = f->next;
    cl_jschema *s = NULL;
    if (!f && key && cl_jschema_compile(&rf, &s, e) == 0 && s) {
        for (struct lformat **p = &lm->formats; *p && lm->nformats >= MAX_FORMATS;)
            if (!(*p)->refs) {
                struct lformat *old = *p;
                *p = old->next;
                cl_jmask_free(old->jm);
                free(old->key);
                free(old);
                lm->nformats--;
            } else
                p = &(*p)->next;
        f = calloc(1, sizeof *f);
        if (f && (f->jm = cl_jmask_new(s, lm->tok, lm->m->cfg.vocab, lm->end_ids, lm->n_end, e))) {
            f->key = key;
            key = NULL;
            f->next = lm->formats;
            lm->formats = f;
            lm->nformats++;
        } else {
            if (!f) cl_jschema_free(s);
            free(f);
            f = NULL;
        }
    }
    if (!key && !f && !e->code) cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
    free(key);
    jv_free(rf);
    if (f) f->refs++;
    return f;
}

/* The choice's seed: the sample key (the call's place in the caller's tree), the request's
 * seed member and the choice index, so a call samples alike in any batch, order or run. */
static uint64_t choice_seed(const cl_llm_call *c, int i)
{
    const char *key = cl_llm_call_sample_key(c);
    const jv *p = cl_llm_call_params(c);
    uint64_t s = cl_hash64(key, strlen(key), 0x6c6f63616cULL);
    if (cl_json_kind(p, "seed") == JV_KIND_NUMBER) {
        uint64_t v = (uint64_t)cl_json_num(p, "seed", 0);
        s = cl_hash64(&v, sizeof v, s);
    }
    if (!*key) { /* no key: the request itself decides */
        char *m = cl_json_dump(cl_llm_call_messages(c), NULL);
        if (m) s = cl_hash64(m, strlen(m), s);
        free(m);
    }
    uint64_t idx = (uint64_t)i;
    return cl_hash64(&idx, sizeof idx, s);
}

static void lstart(void *self, cl_llm_call *c)
{
    struct lrole *r = self;
    struct lmodel *lm = r->lm;
    const jv *msgs = cl_llm_call_messages(c), *p = cl_llm_call_params(c);
    int nm = jv_array_length(jv_copy(*msgs));
    double nd = cl_json_kind(p, "n") == JV_KIND_NUMBER ? cl_json_num(p, "n", 1) : 1;
    int n = nd >= 1 && nd <= 128 ? (int)nd : 0; /* cast only what fits: n = 1e12 is an error */
    if (n < 1) {
        fail(c, CL_EXIT_DATAERR, "local: n must be 1..128");
        return;
    }
    /* the messages as the chat renderer wants them (borrowed strings of msgs) */
    cl_chat_msg *cm = calloc((size_t)nm + 1, sizeof *cm);
    jv *items = calloc((size_t)nm + 1, sizeof *items);
    if (!cm || !items) {
        free(cm);
        free(items);
        fail(c, CL_EXIT_SOFTWARE, "local: out of memory");
        return;
    }
    int bad = 0;
    for (int i = 0; i < nm; i++) {
        items[i] = jv_array_get(jv_copy(*msgs), i);
        const char *role = jv_get_kind(items[i]) == JV_KIND_OBJECT ? cl_json_str(&items[i], "role") : NULL;
        const char *content = role ? cl_json_str(&items[i], "content") : NULL;
        if (role && !content && cl_json_kind(&items[i], "content") == JV_KIND_NULL) content = "";
        if (!role || !content) bad = 1;
        cm[i] = (cl_chat_msg){role, content};
    }
    cl_chat_tokens ct = {0};
    cl_err e = {0};
    int rc = bad ? cl_err_set(&e, CL_EXIT_DATAERR, "local: every message needs a string role and content")
                 : cl_chat_render(lm->tok, lm->format, cm, (size_t)nm, 1, &ct, &e);
    struct lformat *fmt = rc ? NULL : format_of(lm, p, &e);
    if (!rc && e.code) {
        cl_err inner = e;
        rc = cl_err_set(&e, inner.code, "local: %s", inner.msg);
    }
    for (int i = 0; i < nm; i++) jv_free(items[i]);
    free(items);
    free(cm);
    struct lcall *lc = rc ? NULL : calloc(1, sizeof *lc + sizeof(struct lchoice) * (size_t)n);
    if (rc || !lc) {
        if (fmt) fmt->refs--;
        cl_chat_tokens_free(&ct);
        fail(c, rc ? CL_EXIT_DATAERR : CL_EXIT_SOFTWARE, rc ? e.msg : "local: out of memory");
        return;
    }
    lc->c = c;
    lc->r = r;
    lc->nchoice = n;
    lc->fmt = fmt;
    lc->prompt_tokens = (long)ct.ids.n;
    lc->logprobs = cl_json_kind(p, "logprobs") == JV_KIND_TRUE;
    for (int i = 0; i < n && lc->logprobs; i++) lc->ch[i].logprobs = jv_array();
    jv stop = cl_json_get(p, "stop");
    if (jv_get_kind(stop) == JV_KIND_STRING) stop = JV_ARRAY(stop);
    for (int i = 0; jv_get_kind(stop) == JV_KIND_ARRAY && i < jv_array_length(jv_copy(stop)); i++) {
        jv s = jv_array_get(jv_copy(stop), i);
        if (jv_get_kind(s) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(s)) > 0 && lc->nstop < MAX_STOP)
            lc->stop[lc->nstop++] = strdup(jv_string_value(s));
        jv_free(s);
    }
    jv_free(stop);
    double mt = cl_json_num(p, "max_tokens", cl_json_num(p, "max_completion_tokens", 0));
    double tk = cl_json_num(p, "top_k", 0);
    int top_k = tk >= 1 && tk < lm->m->cfg.vocab ? (int)tk : 0; /* 0 and >= vocab: off */
    cl_gen_req req = {
        .prompt = ct.ids.v, .n = (int)ct.ids.n,
        .max_new = mt >= 1 && mt < lm->m->cfg.max_pos ? (int)mt : lm->m->cfg.max_pos,
        .sampler = {.temperature = cl_json_num(p, "temperature", 1.0), .top_k = top_k,
                    .top_p = cl_json_num(p, "top_p", 1.0)},
        .on_token = on_token, .on_end = on_end,
        .filter = {.allows = fmt ? choice_allows : NULL, .mask = choice_mask}};
    lc->max_new = req.max_new < lm->m->cfg.max_pos - req.n ? req.max_new : lm->m->cfg.max_pos - req.n;
    *cl_llm_call_backend_data(c) = lc;
    for (int i = 0; i < n; i++) {
        lc->ch[i].call = lc;
        cl_jstate_init(&lc->ch[i].js);
        req.seed = choice_seed(c, i);
        req.ctx = req.filter.ctx = &lc->ch[i];
        if (!(lc->ch[i].g = cl_batch_submit(lm->batch, &req, &e))) {
            for (int j = 0; j < i; j++) cl_batch_cancel(lm->batch, lc->ch[j].g);
            *cl_llm_call_backend_data(c) = NULL;
            lcall_free(lc);
            cl_chat_tokens_free(&ct);
            fail(c, e.code, e.msg); /* too long for the context: as a server's 400 */
            return;
        }
    }
    cl_chat_tokens_free(&ct);
}

static void labort(void *self, cl_llm_call *c)
{
    struct lrole *r = self;
    struct lcall *lc = *cl_llm_call_backend_data(c);
    if (!lc) return;
    for (int i = 0; i < lc->nchoice; i++)
        if (!lc->ch[i].ended) cl_batch_cancel(r->lm->batch, lc->ch[i].g);
    *cl_llm_call_backend_data(c) = NULL;
    lcall_free(lc);
    fail(c, CL_EXIT_TEMPFAIL, "local: generation aborted");
}

static int lbusy(void *self)
{
    struct lrole *r = self;
    return cl_batch_busy(r->lm->batch);
}

static void lstep(void *self)
{
    struct lrole *r = self;
    cl_batch_step(r->lm->batch);
}

const cl_llm_backend cl_llm_local_backend = {
    .scheme = "local",
    .open = lopen,
    .start = lstart,
    .abort = labort,
    .busy = lbusy,
    .step = lstep,
    .close = lclose,
    .no_cost = 1,
};
