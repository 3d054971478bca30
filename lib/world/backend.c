/* backend.c — the "world:" scheme; see backend.h. */
#include "world/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collab/conv.h"
#include "core/json.h"
#include "world/world.h"

typedef enum program { P_USER, P_JUDGE, P_PASSIVE, P_CAREFUL, P_GUESS, P_ASK } program;

static const char *const names[] = {"user", "judge", "passive", "careful", "guess", "ask"};

static int world_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                      void **self, char **identity, cl_err *e)
{
    (void)llm, (void)cfg;
    int p = -1;
    if (!*arg)
        p = !strcmp(rc->name, "user") ? P_USER : strstr(rc->name, "judge") ? P_JUDGE : P_PASSIVE;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]) && p < 0; i++)
        if (!strcmp(arg, names[i]))
            p = i;
    if (p < 0)
        return cl_err_set(e, CL_EXIT_CONFIG,
                          "--%s 'world:%s': no such world program (user, judge, passive, careful, guess, ask)",
                          rc->name, arg);
    *self = (void *)(intptr_t)(p + 1);
    char id[64];
    snprintf(id, sizeof id, "world:%s", names[p]);
    *identity = strdup(id);
    return *identity ? 0 : cl_err_set(e, CL_EXIT_SOFTWARE, "out of memory");
}

/* Whitespace-separated words: the world's stand-in for token counts in usage. */
static long words(const char *s)
{
    long n = 0;
    for (int in = 0; s && *s; s++) {
        int sp = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

static jv response(const char *text, long prompt_words)
{
    jv choice = cl_json_set_str(cl_json_set(jv_object(), "message", cl_json_message("assistant", text)),
                                "finish_reason", "stop");
    jv usage = cl_json_set_num(cl_json_set_num(jv_object(), "prompt_tokens", (double)prompt_words),
                               "completion_tokens", (double)words(text));
    return cl_json_set(cl_json_set(jv_object(), "choices", JV_ARRAY(choice)), "usage", usage);
}

static const char *message_at(const jv *msgs, int i, const char **role)
{
    jv m = jv_array_get(jv_copy(*msgs), i);
    const char *c = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "content") : NULL;
    *role = jv_get_kind(m) == JV_KIND_OBJECT ? cl_json_str(&m, "role") : NULL;
    jv_free(m); /* the array keeps both strings */
    return c;
}

/* The user simulator, from either request the rollout sends: a prompt holding the goal and
 * the transcript (--user-style prompted: the reply is JSON) or the goal as system prompt and
 * the conversation with roles flipped (--user-style userlm: the reply is plain text). */
static char *user_turn(const jv *msgs, const char **why)
{
    int n = jv_array_length(jv_copy(*msgs));
    const char *role, *first = n ? message_at(msgs, 0, &role) : NULL;
    if (!first) {
        *why = "the user simulator was sent no messages";
        return NULL;
    }
    char *out = NULL;
    if (role && !strcmp(role, "system")) {
        jv conv = jv_array();
        for (int i = 1; i < n; i++) {
            const char *r, *c = message_at(msgs, i, &r);
            if (r && c)
                conv = cl_conv_append(conv, !strcmp(r, "user") ? "assistant" : "user", c);
        }
        out = cl_world_user(first, &conv, CL_TERMINATE_MARKER);
        jv_free(conv);
    } else {
        const char *g = strstr(first, "<<<GOAL\n"), *ge = g ? strstr(g, "\nGOAL>>>") : NULL;
        const char *t = strstr(first, "<<<CHAT\n"), *te = t ? strstr(t, "\nCHAT>>>") : NULL;
        if (!ge) {
            *why = "the user prompt holds no <<<GOAL block";
            return NULL;
        }
        char *goal = strndup(g + 8, (size_t)(ge - g - 8));
        char *chat = te ? strndup(t + 8, (size_t)(te - t - 8)) : NULL;
        jv conv = chat ? cl_world_transcript_messages(chat) : jv_array();
        char *msg = goal ? cl_world_user(goal, &conv, CL_TERMINATE_MARKER) : NULL;
        jv_free(conv);
        free(goal);
        free(chat);
        if (msg) {
            jv o = cl_json_set_str(jv_object(), "response", msg);
            out = cl_json_dump(&o, NULL);
            jv_free(o);
            free(msg);
        }
    }
    if (!out)
        *why = "the goal is not a task of the offline world (cl-seed --preset world)";
    return out;
}

static void world_start(void *self, cl_llm_call *c)
{
    program p = (program)((intptr_t)self - 1);
    const jv *msgs = cl_llm_call_messages(c);
    const char *why = "the conversation does not open with a request of the offline world "
                      "(and world assistants answer chat messages only: use --proact-ratio 0)";
    char *text = NULL;
    long pw = 0;
    int n = jv_array_length(jv_copy(*msgs));
    for (int i = 0; i < n; i++) {
        const char *r, *s = message_at(msgs, i, &r);
        pw += words(s);
    }
    if (p == P_USER) {
        text = user_turn(msgs, &why);
    } else if (p == P_JUDGE) {
        const char *r, *prompt = n ? message_at(msgs, n - 1, &r) : NULL;
        text = prompt ? cl_world_judge(prompt, &why) : NULL;
    } else {
        const char *key = cl_llm_call_sample_key(c);
        uint64_t h = cl_hash64(key ? key : "", key ? strlen(key) : 0, (uint64_t)cl_llm_call_attempt(c));
        static const cl_world_policy pol_of[] = {[P_PASSIVE] = CL_WORLD_PASSIVE, [P_CAREFUL] = CL_WORLD_CAREFUL,
                                                 [P_GUESS] = CL_WORLD_GUESS, [P_ASK] = CL_WORLD_ASK};
        cl_world_policy pol = pol_of[p];
        text = cl_world_assistant(pol, msgs, h);
    }
    cl_llm_outcome o = {.response = jv_invalid()};
    if (text) {
        o.response = response(text, pw);
        free(text);
    } else {
        /* the request is not one this program can answer: the same request fails again */
        o.status = CL_EXIT_DATAERR;
        o.kind = CL_LLM_FAIL_HTTP;
        o.http_status = 400;
        snprintf(o.error, sizeof o.error, "world:%s: %s", names[p], why);
    }
    cl_llm_attempt_done(c, &o);
}

/* Replies are made inside start(): nothing is ever left to abort. */
static void world_abort(void *self, cl_llm_call *c) { (void)self, (void)c; }
static void world_close(void *self) { (void)self; }

const cl_llm_backend cl_world_backend = {
    .scheme = "world", .open = world_open, .start = world_start, .abort = world_abort,
    .close = world_close, .no_cache = 1,
};

const cl_llm_backend *const cl_world_backends[] = {&cl_world_backend, NULL};
