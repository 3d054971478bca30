/* rollout.c — the collaborative simulation engine; see rollout.h.
 *
 * Shape of a run: records enter a ring of slots (the output window) while fewer than
 * cfg->admit_queue calls wait for admission; each slot owns the conversations ("convs") that
 * build its output; a conv is a state machine whose reply callback appends the message and
 * submits the next call, or ends the conv; when a slot's last conv ends the slot is final and
 * the head of the ring is written as soon as it is final.  Every value a record's output holds
 * lands at a fixed place of its tree (candidate c, future f), and usage is summed in tree
 * order, so the bytes do not depend on the order in which replies arrive. */
#include "collab/rollout.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/conv.h"
#include "core/json.h"
#include "collab/lenient_json.h"
#include "collab/prompts.h"
#include "collab/schema.h"

/* ---- modes --------------------------------------------------------------------------- */

static const char *const mode_names[] = {"vanilla", "system", "proact"};

int cl_assistant_mode_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, mode_names[i]))
            return i;
    return -1;
}

const char *cl_assistant_mode_name(int mode)
{
    return mode >= 0 && mode < 3 ? mode_names[mode] : "mixed";
}

/* ---- structures ---------------------------------------------------------------------- */

enum { SLOT_RUNNING, SLOT_READY, SLOT_FAILED, SLOT_INTERRUPTED };
enum { CONV_FULL, CONV_OPENING, CONV_CANDIDATE, CONV_FUTURE };
enum { SPEAK_USER, SPEAK_ASSISTANT };

typedef struct engine engine;

typedef struct slot {
    engine *en;
    int state;
    cl_rec where;        /* src, lineno (and raw bytes for a pass-through) for cl_io_* */
    char *raw;           /* pass-through bytes, or NULL */
    jv rec;              /* the input record */
    char *id;
    int turn;            /* the state's turn when it came in */
    jv msgs;             /* branch: the state's messages (with a new user message, if any) */
    jv cands;            /* branch: candidate objects, index = candidate */
    jv *usage;           /* per conv, in tree order: [0] opening/full, then K, then K*S */
    int nusage;
    int live;            /* convs not yet ended */
    char *error;
    const char *reason;  /* done_reason when the state ends here */
} slot;

typedef struct conv {
    slot *sl;
    int kind;
    int cand, fut;       /* place in the tree (-1 when not applicable) */
    int uidx;            /* index into sl->usage */
    jv msgs;             /* the whole conversation the next prompt sees */
    int nbase;           /* messages that existed before this conv */
    int user_left, asst_left; /* messages each side may still send; -1 = no limit */
    int next;            /* SPEAK_USER / SPEAK_ASSISTANT */
    int attempt;         /* re-asks of the current message */
    int terminated;
    const cl_rollout_source *src;
    int amode;           /* resolved assistant mode of src */
    jv usage;
    jv logps;            /* a candidate's sampled-token log-probs (--logprobs), or null */
} conv;

struct engine {
    const cl_rollout_config *cfg;
    cl_llm *llm;
    cl_io *io;
    char *p_user, *p_opening, *p_proact, *p_system, *p_userlm;
    slot **ring;
    int head, count;
    int stopped;         /* no more records are admitted */
    cl_err fatal;
    int has_fatal;
    /* statistics */
    long records, passed, failed, terminated, max_turns, candidates, futures, fut_terminated,
        reasks, max_held;
};

/* ---- small helpers ------------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s)
        abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A uniform number in [0,1) from the run seed and a text naming the choice. */
static double choice01(uint64_t seed, const char *what)
{
    return (double)(cl_hash64(what, strlen(what), seed) >> 11) / 9007199254740992.0;
}

/* Sums usage objects key by key (b consumed). */
static jv usage_merge(jv a, jv b)
{
    if (jv_get_kind(b) != JV_KIND_OBJECT) {
        jv_free(b);
        return a;
    }
    if (jv_get_kind(a) != JV_KIND_OBJECT) {
        jv_free(a);
        return b;
    }
    jv_object_foreach(b, k, v) {
        jv old = jv_object_get(jv_copy(a), jv_copy(k));
        if (jv_get_kind(old) == JV_KIND_NUMBER && jv_get_kind(v) == JV_KIND_NUMBER)
            a = jv_object_set(a, k, jv_number(jv_number_value(old) + jv_number_value(v)));
        else
            a = jv_object_set(a, k, v), v = jv_invalid();
        jv_free(old);
        jv_free(v);
    }
    jv_free(b);
    return a;
}

/* ---- assistant modes ----------------------------------------------------------------- */

/* Which of K candidates use the proactive prompt, and which of the rest the system prompt:
 * floor(ratio*K + u) of them, u uniform, so the expected share is exactly the ratio and K = 2
 * at 0.5 always gives one of each (the paper's collaborative-vs-vanilla pair); which ones is a
 * seeded permutation. */
static int mixed_mode(const engine *en, const slot *sl, int c, int k)
{
    const cl_rollout_config *cfg = en->cfg;
    char buf[512];
    int rank = 0;
    snprintf(buf, sizeof buf, "mode/%s/%d/c%d", sl->id, sl->turn, c);
    double mine = choice01(cfg->seed, buf);
    for (int j = 0; j < k; j++) {
        snprintf(buf, sizeof buf, "mode/%s/%d/c%d", sl->id, sl->turn, j);
        double other = choice01(cfg->seed, buf);
        rank += other < mine || (other == mine && j < c);
    }
    snprintf(buf, sizeof buf, "mode/%s/%d/proact", sl->id, sl->turn);
    int nproact = (int)floor(cfg->proact_ratio * k + choice01(cfg->seed, buf));
    if (rank < nproact)
        return CL_ASSISTANT_PROACT;
    snprintf(buf, sizeof buf, "mode/%s/%d/system", sl->id, sl->turn);
    int nsystem = (int)floor(cfg->system_ratio * (k - nproact) + choice01(cfg->seed, buf));
    return rank - nproact < nsystem ? CL_ASSISTANT_SYSTEM : CL_ASSISTANT_VANILLA;
}

/* ---- prompts ------------------------------------------------------------------------- */

static jv prompt_vars(const engine *en, const slot *sl, const jv *msgs)
{
    const char *goal = cl_seed_prompt(&sl->rec), *desc = cl_seed_task_desc(&sl->rec);
    char *t = msgs ? cl_conv_render(msgs) : xstrdup("");
    jv v = jv_object();
    v = cl_json_set_str(v, "goal", goal ? goal : "");
    v = cl_json_set_str(v, "task_desc", desc ? desc : "a task");
    v = cl_json_set_str(v, "transcript", t);
    v = cl_json_set_str(v, "marker", en->cfg->marker);
    free(t);
    return v;
}

/* Renders a prompt or records a fatal error (a broken --prompt-dir file stops the run). */
static char *render(engine *en, const char *tmpl, const jv *vars)
{
    cl_err e = {0};
    char *s = cl_prompt_render(tmpl, vars, &e);
    if (!s && !en->has_fatal) {
        en->fatal = e;
        en->has_fatal = 1;
    }
    return s;
}

/* The request of a user-simulator turn. */
static jv user_request(engine *en, conv *cv)
{
    const cl_rollout_config *cfg = en->cfg;
    jv vars = prompt_vars(en, cv->sl, &cv->msgs);
    jv req = jv_invalid();
    if (cfg->user_style == CL_USER_USERLM) {
        /* Purpose-built user models speak in the assistant slot: the goal is their system
         * prompt and the assistant's messages reach them as user messages. */
        char *sys = render(en, en->p_userlm, &vars);
        if (sys) {
            req = cl_conv_append(jv_array(), "system", sys);
            int n = jv_array_length(jv_copy(cv->msgs));
            for (int i = 0; i < n; i++) {
                jv m = jv_array_get(jv_copy(cv->msgs), i);
                const char *role = cl_json_str(&m, "role");
                if (role && strcmp(role, "system") != 0)
                    req = cl_conv_append(req, !strcmp(role, "user") ? "assistant" : "user",
                                         cl_json_str(&m, "content"));
                jv_free(m);
            }
        }
        free(sys);
    } else {
        int opening = cl_conv_count(&cv->msgs, NULL) == 0;
        char *p = render(en, opening ? en->p_opening : en->p_user, &vars);
        if (p)
            req = cl_conv_append(jv_array(), "user", p);
        free(p);
    }
    jv_free(vars);
    return req;
}

/* The request of an assistant turn in the conv's mode. */
static jv assistant_request(engine *en, conv *cv)
{
    if (cv->amode == CL_ASSISTANT_PROACT) {
        jv vars = prompt_vars(en, cv->sl, &cv->msgs);
        char *p = render(en, en->p_proact, &vars);
        jv_free(vars);
        jv req = p ? cl_conv_append(jv_array(), "user", p) : jv_invalid();
        free(p);
        return req;
    }
    jv msgs = cl_conv_request(&cv->msgs);
    if (cv->amode == CL_ASSISTANT_SYSTEM) {
        jv first = jv_array_length(jv_copy(msgs)) ? jv_array_get(jv_copy(msgs), 0) : jv_null();
        const char *role = jv_get_kind(first) == JV_KIND_OBJECT ? cl_json_str(&first, "role") : NULL;
        if (!role || strcmp(role, "system") != 0)
            msgs = jv_array_concat(cl_conv_append(jv_array(), "system", en->p_system), msgs);
        jv_free(first);
    }
    return msgs;
}

/* The response_format of a JSON reply: every field the prompt asks for may appear, once, in
 * any order, as strings; "response" (what json_response reads) must. */
static jv reply_format(const char *name, const char *const *fields, int n)
{
    jv props = jv_object();
    for (int i = 0; i < n; i++) props = cl_json_set(props, fields[i], JV_OBJECT(jv_string("type"), jv_string("string")));
    jv schema = JV_OBJECT(jv_string("type"), jv_string("object"), jv_string("properties"), props,
                          jv_string("required"), JV_ARRAY(jv_string("response")),
                          jv_string("additionalProperties"), jv_false());
    return JV_OBJECT(jv_string("type"), jv_string("json_schema"), jv_string("json_schema"),
                     JV_OBJECT(jv_string("name"), jv_string(name), jv_string("schema"), schema));
}

int cl_response_format_parse(const char *name)
{
    static const char *const names[] = {"auto", "schema", "none"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

/* Whether a call to role whose reply must be JSON carries the reply's schema. */
static int wants_format(const engine *en, int role)
{
    const char *scheme = cl_llm_role_scheme(en->llm, role);
    return en->cfg->response_format == CL_RF_SCHEMA ||
           (en->cfg->response_format == CL_RF_AUTO && scheme && !strcmp(scheme, "local"));
}

/* ---- reading replies ----------------------------------------------------------------- */

/* The "response" (or "message") string of a JSON reply, malloc'd, or NULL with *why set. */
static char *json_response(const char *content, const char **why)
{
    if (!content) {
        *why = "the reply has no content";
        return NULL;
    }
    jv o = cl_lenient_json(content, strlen(content));
    if (!jv_is_valid(o)) {
        jv_free(o);
        *why = "the reply holds no JSON object";
        return NULL;
    }
    const char *s = cl_json_str(&o, "response");
    if (!s)
        s = cl_json_str(&o, "message");
    char *out = s ? xstrdup(s) : NULL;
    if (!out)
        *why = "the reply's JSON has no \"response\" string";
    jv_free(o);
    return out;
}

/* Trims ASCII space at both ends, in place. */
static char *trim(char *s)
{
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = 0;
    size_t k = strspn(s, " \t\r\n");
    memmove(s, s + k, n - k + 1);
    return s;
}

/* The user's message from a reply; a userlm end token becomes our marker, so every tool
 * downstream recognises the end the same way. */
static char *user_message(const engine *en, const char *content, const char **why)
{
    const cl_rollout_config *cfg = en->cfg;
    if (cfg->user_style == CL_USER_PROMPTED)
        return json_response(content, why);
    if (!content) {
        *why = "the reply has no content";
        return NULL;
    }
    char *s = xstrdup(content);
    char *end = cfg->userlm_end && *cfg->userlm_end ? strstr(s, cfg->userlm_end) : NULL;
    if (end) {
        *end = 0; /* whatever follows the end token is not part of the conversation */
        trim(s);
        char *m = xprintf("%s%s%s", s, *s ? " " : "", cfg->marker);
        free(s);
        return m;
    }
    return trim(s);
}

static char *assistant_message(const conv *cv, const char *content, const char **why)
{
    if (cv->amode == CL_ASSISTANT_PROACT)
        return json_response(content, why);
    if (!content) {
        *why = "the reply has no content";
        return NULL;
    }
    return xstrdup(content);
}

/* ---- slots --------------------------------------------------------------------------- */

static void slot_free(slot *sl)
{
    jv_free(sl->rec);
    jv_free(sl->msgs);
    jv_free(sl->cands);
    for (int i = 0; i < sl->nusage; i++)
        jv_free(sl->usage[i]);
    free(sl->usage);
    free(sl->raw);
    free((char *)sl->where.src);
    free(sl->id);
    free(sl->error);
    free(sl);
}

static void slot_fail(slot *sl, char *msg)
{
    if (sl->state == SLOT_RUNNING) {
        sl->state = SLOT_FAILED;
        sl->error = msg;
    } else {
        free(msg);
    }
}

/* The record's usage: every conv's usage added in tree order. */
static jv slot_usage(slot *sl)
{
    jv u = jv_null();
    for (int i = 0; i < sl->nusage; i++) {
        u = usage_merge(u, sl->usage[i]);
        sl->usage[i] = jv_null();
    }
    return jv_get_kind(u) == JV_KIND_NULL ? jv_object() : u;
}

static void slot_finish_full(slot *sl, jv msgs, const char *reason)
{
    engine *en = sl->en;
    jv out = cl_state_set_messages(jv_copy(sl->rec), msgs);
    out = cl_state_finish(out, reason);
    out = cl_json_set_str(out, "prompt_set", cl_prompt_set_name(en->cfg->prompt_set));
    out = cl_json_set(out, "usage", slot_usage(sl));
    jv_free(sl->rec);
    sl->rec = out;
    sl->state = SLOT_READY;
    if (!strcmp(reason, "terminated"))
        en->terminated++;
    else
        en->max_turns++;
}

static void slot_finish_branch(slot *sl)
{
    jv out = cl_state_set_messages(jv_copy(sl->rec), jv_copy(sl->msgs));
    if (sl->reason)
        out = cl_state_finish(out, sl->reason);
    else
        out = cl_json_set(cl_json_set(out, "done", jv_false()), "candidates", jv_copy(sl->cands));
    out = cl_json_set_str(out, "prompt_set", cl_prompt_set_name(sl->en->cfg->prompt_set));
    out = cl_json_set(out, "usage", slot_usage(sl));
    jv_free(sl->rec);
    sl->rec = out;
    sl->state = SLOT_READY;
}

/* ---- conversations ------------------------------------------------------------------- */

static void conv_submit(conv *cv);

static conv *conv_new(slot *sl, int kind, jv msgs, int cand, int fut)
{
    conv *cv = calloc(1, sizeof *cv);
    if (!cv)
        abort();
    cv->sl = sl;
    cv->kind = kind;
    cv->msgs = msgs;
    cv->nbase = jv_array_length(jv_copy(msgs));
    cv->cand = cand;
    cv->fut = fut;
    cv->usage = jv_null();
    cv->logps = jv_null();
    sl->live++;
    return cv;
}

static void conv_free(conv *cv)
{
    jv_free(cv->msgs);
    jv_free(cv->usage);
    jv_free(cv->logps);
    free(cv);
}

static void slot_settle(slot *sl);

static void start_candidates(slot *sl);

/* The conv ended (normally, or abandoned when its slot failed): hand its result to the slot. */
static void conv_end(conv *cv)
{
    slot *sl = cv->sl;
    engine *en = sl->en;
    sl->usage[cv->uidx] = usage_merge(sl->usage[cv->uidx], cv->usage);
    cv->usage = jv_null();
    sl->live--;
    if (sl->state == SLOT_RUNNING) {
        switch (cv->kind) {
        case CONV_FULL:
            slot_finish_full(sl, jv_copy(cv->msgs), cv->terminated ? "terminated" : "max_turns");
            break;
        case CONV_OPENING:
            jv_free(sl->msgs);
            sl->msgs = jv_copy(cv->msgs);
            if (cv->terminated) {
                sl->reason = "terminated";
                en->terminated++;
            } else {
                start_candidates(sl);
            }
            break;
        case CONV_CANDIDATE: {
            const cl_rollout_config *cfg = en->cfg;
            jv c = jv_object();
            char idb[32];
            snprintf(idb, sizeof idb, "c%d", cv->cand);
            c = cl_json_set_str(c, "id", idb);
            c = cl_json_set_str(c, "content", cl_conv_content(&cv->msgs, -1));
            c = cl_json_set_str(c, "source", cv->src->label);
            c = cl_json_set_str(c, "mode", cl_assistant_mode_name(cv->amode));
            jv last = jv_array_get(jv_copy(cv->msgs), jv_array_length(jv_copy(cv->msgs)) - 1);
            if (cl_json_has(&last, "usage"))
                c = cl_json_set(c, "usage", cl_json_get(&last, "usage"));
            jv_free(last);
            if (jv_get_kind(cv->logps) == JV_KIND_ARRAY) c = cl_json_set(c, "logps", jv_copy(cv->logps));
            jv futs = jv_array();
            for (int f = 0; f < cfg->samples && cfg->window > 0; f++)
                futs = jv_array_append(futs, jv_null());
            c = cl_json_set(c, "futures", futs);
            sl->cands = jv_array_set(sl->cands, cv->cand, c);
            en->candidates++;
            for (int f = 0; f < cfg->samples && cfg->window > 0; f++) {
                conv *fc = conv_new(sl, CONV_FUTURE, jv_copy(cv->msgs), cv->cand, f);
                fc->uidx = 1 + cfg->candidates + cv->cand * cfg->samples + f;
                fc->src = &cfg->future;
                fc->amode = cfg->future.mode < 0 ? CL_ASSISTANT_VANILLA : cfg->future.mode;
                fc->user_left = fc->asst_left = cfg->window;
                fc->next = SPEAK_USER;
                conv_submit(fc);
            }
            break;
        }
        case CONV_FUTURE: {
            jv fut = jv_object();
            jv own = jv_array_slice(jv_copy(cv->msgs), cv->nbase, jv_array_length(jv_copy(cv->msgs)));
            fut = cl_json_set(fut, "messages", own);
            fut = cl_json_set(fut, "terminated", jv_bool(cv->terminated));
            jv c = jv_array_get(jv_copy(sl->cands), cv->cand);
            jv fs = cl_json_get(&c, "futures");
            c = cl_json_set(c, "futures", jv_array_set(fs, cv->fut, fut));
            sl->cands = jv_array_set(sl->cands, cv->cand, c);
            en->futures++;
            en->fut_terminated += cv->terminated;
            break;
        }
        }
    }
    conv_free(cv);
    slot_settle(sl);
}

/* After a conv ends: a branch slot whose convs are all done is final. */
static void slot_settle(slot *sl)
{
    if (sl->live > 0 || sl->state != SLOT_RUNNING)
        return;
    if (sl->en->cfg->mode == CL_ROLLOUT_BRANCH)
        slot_finish_branch(sl);
}

static void start_candidates(slot *sl)
{
    engine *en = sl->en;
    const cl_rollout_config *cfg = en->cfg;
    for (int c = 0; c < cfg->candidates; c++) {
        conv *cv = conv_new(sl, CONV_CANDIDATE, jv_copy(sl->msgs), c, -1);
        cv->uidx = 1 + c;
        cv->src = cfg->nsources ? &cfg->sources[c] : &cfg->assistant;
        cv->amode = cv->src->mode >= 0 ? cv->src->mode : mixed_mode(en, sl, c, cfg->candidates);
        cv->user_left = 0;
        cv->asst_left = 1;
        cv->next = SPEAK_ASSISTANT;
        conv_submit(cv);
    }
}

/* "ID/sSEED/..." naming the message this call produces; see llm.h on sample keys. */
static char *sample_key(const conv *cv)
{
    const slot *sl = cv->sl;
    const cl_rollout_config *cfg = sl->en->cfg;
    int m = jv_array_length(jv_copy(cv->msgs));
    char place[96];
    switch (cv->kind) {
    case CONV_FULL: snprintf(place, sizeof place, "full/m%d", m); break;
    case CONV_OPENING: snprintf(place, sizeof place, "t%d/u", sl->turn); break;
    case CONV_CANDIDATE: snprintf(place, sizeof place, "t%d/c%d", sl->turn, cv->cand); break;
    default:
        snprintf(place, sizeof place, "t%d/c%d/f%d/m%d", sl->turn, cv->cand, cv->fut, m - cv->nbase);
    }
    if (cv->attempt)
        return xprintf("%s/s%" PRIu64 "/%s/r%d", sl->id, cfg->seed, place, cv->attempt);
    return xprintf("%s/s%" PRIu64 "/%s", sl->id, cfg->seed, place);
}

static void on_reply(void *ctx, const cl_llm_result *r);

static void conv_submit(conv *cv)
{
    slot *sl = cv->sl;
    engine *en = sl->en;
    if (sl->state != SLOT_RUNNING) {
        conv_end(cv);
        return;
    }
    int user = cv->next == SPEAK_USER;
    if (user && !cl_seed_prompt(&sl->rec)) {
        slot_fail(sl, xstrdup("the record has no \"prompt\" (the user's hidden goal) to simulate the user from"));
        conv_end(cv);
        return;
    }
    jv req = user ? user_request(en, cv) : assistant_request(en, cv);
    if (!jv_is_valid(req)) {
        jv_free(req);
        slot_fail(sl, xstrdup("prompt rendering failed"));
        en->stopped = 1;
        conv_end(cv);
        return;
    }
    char *key = sample_key(cv);
    /* Each sample gets its own seed, so servers that honour seeds reproduce it and the S
     * futures of one candidate still differ. */
    jv params = jv_object();
    if (!en->cfg->no_sample_seed)
        params = cl_json_set_num(params, "seed", (double)(cl_hash64(key, strlen(key), en->cfg->seed) & 0x7fffffff));
    int role = en->cfg->user_role;
    if (!user) {
        role = cv->src->role;
        if (cv->src->model)
            params = cl_json_set_str(params, "model", cv->src->model);
        if (en->cfg->logprobs && cv->kind == CONV_CANDIDATE)
            params = cl_json_set(params, "logprobs", jv_true());
    }
    if ((user ? en->cfg->user_style == CL_USER_PROMPTED : cv->amode == CL_ASSISTANT_PROACT) && wants_format(en, role)) {
        static const char *const proact[] = {"current_problem", "thought", "response"};
        params = cl_json_set(params, "response_format",
                             user ? reply_format("user_turn", proact + 1, 2) : reply_format("proactive_reply", proact, 3));
    }
    cl_llm_submit(en->llm, role, req, params, key, on_reply, cv);
    free(key);
}

/* The last message of msgs (consumed), whose text is msg, gets the tokens its call reported, so
 * cl-reward can count tokens from the API's usage message by message.  When msg is one field of
 * a JSON reply (the proactive assistant, the user simulator), the call also paid for the
 * private "thought" the user never reads: visible_tokens is the reply's share of the
 * completion, in proportion to its bytes (the server's tokenizer is not known here).  Replays
 * report the same numbers. */
static jv tag_usage(jv msgs, const cl_llm_result *r, const char *msg)
{
    if (r->completion_tokens < 0)
        return msgs;
    int n = jv_array_length(jv_copy(msgs));
    jv m = jv_array_get(jv_copy(msgs), n - 1);
    jv u = cl_json_set_num(jv_object(), "prompt_tokens", (double)r->prompt_tokens);
    u = cl_json_set_num(u, "completion_tokens", (double)r->completion_tokens);
    size_t raw = r->content ? strlen(r->content) : 0, shown = strlen(msg);
    if (raw > shown)
        u = cl_json_set_num(u, "visible_tokens",
                            floor((double)r->completion_tokens * (double)shown / (double)raw + 0.5));
    return jv_array_set(msgs, n - 1, cl_json_set(m, "usage", u));
}

/* The per-token log-probs of a reply (choices[0].logprobs.content[].logprob, OpenAI's shape),
 * or null when the reply has none or its message is not the whole reply (a JSON field of it):
 * the numbers must belong to the tokens of the message itself. */
static jv reply_logps(const cl_llm_result *r, const char *msg)
{
    if (!r->content || strcmp(r->content, msg) || r->nchoices < 1)
        return jv_null();
    jv ch = jv_array_get(cl_json_get(r->response, "choices"), 0);
    jv lp = jv_get_kind(ch) == JV_KIND_OBJECT ? cl_json_get(&ch, "logprobs") : jv_null();
    jv content = jv_get_kind(lp) == JV_KIND_OBJECT ? cl_json_get(&lp, "content") : jv_null();
    if (jv_get_kind(content) != JV_KIND_ARRAY) {
        jv_free(content);
        content = jv_array();
    }
    jv out = jv_array_length(jv_copy(content)) > 0 ? jv_array() : jv_null();
    jv_array_foreach(content, i, t) {
        jv x = jv_get_kind(t) == JV_KIND_OBJECT ? cl_json_get(&t, "logprob") : jv_null();
        if (jv_get_kind(x) == JV_KIND_NUMBER && jv_get_kind(out) == JV_KIND_ARRAY) {
            out = jv_array_append(out, x);
        } else {
            jv_free(x);
            jv_free(out);
            out = jv_null();
        }
        jv_free(t);
    }
    jv_free(content);
    jv_free(lp);
    jv_free(ch);
    return out;
}

static void on_reply(void *ctx, const cl_llm_result *r)
{
    conv *cv = ctx;
    slot *sl = cv->sl;
    engine *en = sl->en;
    const cl_rollout_config *cfg = en->cfg;
    int user = cv->next == SPEAK_USER;
    cv->usage = cl_llm_usage_add(en->llm, cv->usage, r);
    if (sl->state != SLOT_RUNNING) {
        conv_end(cv);
        return;
    }
    if (r->status == CL_EXIT_TEMPFAIL) {
        /* Stopped (interrupt, budget): the record is not complete and is not written; a
         * re-run replays what was paid for from the cache. */
        sl->state = SLOT_INTERRUPTED;
        en->stopped = 1;
        conv_end(cv);
        return;
    }
    if (r->status != 0) {
        slot_fail(sl, xprintf("%s", r->error ? r->error : "LLM call failed"));
        conv_end(cv);
        return;
    }
    const char *why = NULL;
    char *msg = user ? user_message(en, r->content, &why) : assistant_message(cv, r->content, &why);
    if (!msg) {
        if (cv->attempt < cfg->parse_retries) {
            cv->attempt++;
            en->reasks++;
            conv_submit(cv);
        } else {
            slot_fail(sl, xprintf("%s reply could not be read after %d attempts: %s",
                                  user ? "user simulator" : "assistant", cv->attempt + 1, why));
            conv_end(cv);
        }
        return;
    }
    cv->attempt = 0;
    if (!user && cv->kind == CONV_CANDIDATE && en->cfg->logprobs) {
        jv_free(cv->logps);
        cv->logps = reply_logps(r, msg);
    }
    cv->msgs = cl_conv_append(cv->msgs, user ? "user" : "assistant", msg);
    cv->msgs = tag_usage(cv->msgs, r, msg);
    if (user && cl_conv_has_marker(msg, cfg->marker))
        cv->terminated = 1;
    free(msg);
    int *left = user ? &cv->user_left : &cv->asst_left;
    if (*left > 0)
        (*left)--;
    cv->next = user ? SPEAK_ASSISTANT : SPEAK_USER;
    int next_left = cv->next == SPEAK_USER ? cv->user_left : cv->asst_left;
    if (cv->terminated || next_left == 0 || cv->asst_left == 0)
        conv_end(cv);
    else
        conv_submit(cv);
}

/* ---- admission and output ------------------------------------------------------------ */

static char *record_id(const jv *v, uint64_t index)
{
    jv id = cl_json_get(v, "id");
    char *s;
    if (jv_get_kind(id) == JV_KIND_STRING)
        s = xstrdup(jv_string_value(id));
    else if (jv_get_kind(id) == JV_KIND_NUMBER)
        s = xprintf("%.17g", jv_number_value(id));
    else
        s = xprintf("#%" PRIu64, index);
    jv_free(id);
    return s;
}

/* Starts one record: a pass-through, a --full conversation or a --branch step. */
static void slot_start(engine *en, slot *sl, cl_rec *rec)
{
    const cl_rollout_config *cfg = en->cfg;
    const jv *v = cl_rec_value(rec);
    sl->rec = jv_copy(*v);
    sl->msgs = jv_null();
    sl->cands = jv_null();
    sl->where.src = xstrdup(rec->src);
    sl->where.lineno = rec->lineno;
    sl->id = record_id(v, rec->index);
    en->records++;
    if (cl_state_done(v)) {
        /* Finished states pass through with their exact bytes. */
        if (rec->raw) {
            sl->raw = malloc(rec->rawlen ? rec->rawlen : 1);
            if (!sl->raw)
                abort();
            memcpy(sl->raw, rec->raw, rec->rawlen);
            sl->where.raw = sl->raw;
            sl->where.rawlen = rec->rawlen;
        }
        sl->state = SLOT_READY;
        en->passed++;
        return;
    }
    jv msgs = cl_state_messages(v);
    sl->turn = cl_conv_turns(&msgs);
    const char *last = cl_conv_last_role(&msgs);
    int user_next = !last || strcmp(last, "user") != 0;
    if (cfg->mode == CL_ROLLOUT_FULL) {
        sl->nusage = 1;
        sl->usage = calloc(1, sizeof *sl->usage);
        if (!sl->usage)
            abort();
        sl->usage[0] = jv_null();
        const char *lc = cl_conv_content(&msgs, -1);
        int ended = !user_next && cl_conv_has_marker(lc, cfg->marker);
        if (ended || sl->turn >= cfg->max_turns) {
            slot_finish_full(sl, msgs, ended ? "terminated" : "max_turns");
            return;
        }
        conv *cv = conv_new(sl, CONV_FULL, msgs, -1, -1);
        cv->src = &cfg->assistant;
        cv->amode = cfg->assistant.mode >= 0 ? cfg->assistant.mode : mixed_mode(en, sl, 0, 1);
        cv->user_left = -1;
        cv->asst_left = cfg->max_turns - sl->turn;
        cv->next = user_next ? SPEAK_USER : SPEAK_ASSISTANT;
        conv_submit(cv);
        return;
    }
    sl->nusage = 1 + cfg->candidates + cfg->candidates * cfg->samples;
    sl->usage = calloc((size_t)sl->nusage, sizeof *sl->usage);
    if (!sl->usage)
        abort();
    for (int i = 0; i < sl->nusage; i++)
        sl->usage[i] = jv_null();
    sl->cands = jv_array();
    for (int c = 0; c < cfg->candidates; c++)
        sl->cands = jv_array_append(sl->cands, jv_null());
    sl->msgs = msgs;
    if (sl->turn >= cfg->max_turns) {
        sl->reason = "max_turns";
        en->max_turns++;
        slot_settle(sl);
    } else if (user_next) {
        /* A seed, or a state that ends with the assistant: the user speaks first. */
        conv *cv = conv_new(sl, CONV_OPENING, jv_copy(msgs), -1, -1);
        cv->user_left = 1;
        cv->asst_left = 0;
        cv->next = SPEAK_USER;
        conv_submit(cv);
    } else if (cl_conv_has_marker(cl_conv_content(&msgs, -1), cfg->marker)) {
        sl->reason = "terminated";
        en->terminated++;
        slot_settle(sl);
    } else {
        start_candidates(sl);
    }
}

/* Writes the finished records at the head of the window, in input order. */
static int flush_head(engine *en, cl_err *e)
{
    while (en->count > 0) {
        slot *sl = en->ring[en->head];
        int rc = 0;
        if (sl->state == SLOT_READY) {
            rc = sl->raw ? cl_io_put_rec(en->io, &sl->where, e) : cl_io_put(en->io, jv_copy(sl->rec), e);
        } else if (sl->state == SLOT_FAILED && sl->live == 0) {
            /* A failed record waits for the calls of its tree still in flight: their
             * callbacks point into the slot, and what they cost belongs on its usage. */
            en->failed++;
            /* What a failed record cost is still on it. */
            jv v = cl_json_set(jv_copy(sl->rec), "usage", slot_usage(sl));
            rc = cl_io_fail(en->io, &sl->where, v, sl->error, e);
        } else {
            break;
        }
        slot_free(sl);
        en->ring[en->head] = NULL;
        en->head = (en->head + 1) % en->cfg->buffer;
        en->count--;
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int load_prompts(engine *en, cl_err *e)
{
    const char *dir = en->cfg->prompt_dir;
    struct {
        char **dst;
        const char *name;
    } want[] = {
        {&en->p_user, "user_simulator"}, {&en->p_opening, "user_opening"},
        {&en->p_proact, "proact_assistant"}, {&en->p_system, "collabllm_system"},
        {&en->p_userlm, "userlm_system"},
    };
    jv vars = jv_object();
    const char *names[] = {"goal", "task_desc", "transcript", "marker"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        vars = cl_json_set_str(vars, names[i], "x");
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        *want[i].dst = cl_prompt_load(dir, cl_prompt_in_set(en->cfg->prompt_set, want[i].name), e);
        char *probe = *want[i].dst ? cl_prompt_render(*want[i].dst, &vars, e) : NULL;
        if (!probe) {
            /* A typo in an overriding file is caught before anything is paid for. */
            jv_free(vars);
            return -1;
        }
        free(probe);
    }
    jv_free(vars);
    return 0;
}

int cl_rollout_run(const cl_rollout_config *cfg, cl_llm *llm, cl_io *io, cl_err *e)
{
    engine en = {.cfg = cfg, .llm = llm, .io = io};
    int status = 0;
    if (load_prompts(&en, e) < 0) {
        status = -1;
        goto out;
    }
    en.ring = calloc((size_t)cfg->buffer, sizeof *en.ring);
    if (!en.ring)
        abort();
    int eof = 0;
    for (;;) {
        if (flush_head(&en, e) < 0) {
            status = -1;
            cl_llm_stop(llm, 0);
            en.stopped = 1;
        }
        if (cl_llm_exit_status(llm) != 0)
            en.stopped = 1;
        while (!eof && !en.stopped && en.count < cfg->buffer && cl_llm_queued(llm) < cfg->admit_queue) {
            cl_rec rec;
            int r = cl_io_next(io, &rec, e);
            if (r > 0 && (r = cl_schema_admit(io, &rec, CL_SCHEMA_STATE, e)) == 0)
                continue; /* malformed, skipped with --skip-bad */
            if (r <= 0) {
                eof = 1;
                if (r < 0) {
                    status = -1;
                    en.stopped = 1;
                }
                break;
            }
            slot *sl = calloc(1, sizeof *sl);
            if (!sl)
                abort();
            sl->en = &en;
            en.ring[(en.head + en.count) % cfg->buffer] = sl;
            en.count++;
            slot_start(&en, sl, &rec);
            if (en.count > en.max_held)
                en.max_held = en.count;
        }
        if (en.has_fatal && !en.stopped) {
            en.stopped = 1;
            cl_llm_stop(llm, 0);
        }
        if (cl_llm_pending(llm) == 0) {
            if (flush_head(&en, e) < 0)
                status = -1;
            if (en.count == 0 && (eof || en.stopped))
                break;
            if (en.stopped)
                break; /* what is left at the head cannot finish any more */
            continue;
        }
        cl_llm_step(llm, 1.0);
    }
    if (en.has_fatal && status == 0) {
        *e = en.fatal;
        status = -1;
    }
    jv st = jv_object();
    st = cl_json_set_num(st, "records", (double)en.records);
    st = cl_json_set_num(st, "passed_through", (double)en.passed);
    st = cl_json_set_num(st, "failed", (double)en.failed);
    st = cl_json_set_num(st, "terminated", (double)en.terminated);
    st = cl_json_set_num(st, "max_turns", (double)en.max_turns);
    st = cl_json_set_num(st, "candidates", (double)en.candidates);
    st = cl_json_set_num(st, "futures", (double)en.futures);
    st = cl_json_set_num(st, "futures_terminated", (double)en.fut_terminated);
    st = cl_json_set_num(st, "reasks", (double)en.reasks);
    st = cl_json_set_num(st, "unfinished", (double)en.count);
    st = cl_json_set_num(st, "max_held", (double)en.max_held);
    cl_io_stat(io, "rollout", st);
    for (int i = 0; i < en.count; i++)
        slot_free(en.ring[(en.head + i) % cfg->buffer]);
out:
    free(en.ring);
    free(en.p_user);
    free(en.p_opening);
    free(en.p_proact);
    free(en.p_system);
    free(en.p_userlm);
    return status;
}
