/* Unit tests for lib/llm: the loop's contract with callers and backends, driven by scripted
 * backends plugged in through cl_llm_config.extra_backends (no HTTP here; the HTTP backend is
 * tested over loopback in tests/cli/t01*.t). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "llm/llm.h"
#include "llm/backend.h"
#include "core/sha256.h"

/* ---- a scripted backend ------------------------------------------------------------------ */

enum mode { ECHO, FLAKY, FATAL, QUEUED };

typedef struct script {
    enum mode mode;
    int starts;            /* attempts started */
    cl_llm_call *queue[64];/* QUEUED: calls waiting for step() */
    int nqueue;
} script;

static jv reply_for(const char *text, long tokens)
{
    jv msg = cl_json_message("assistant", text);
    jv choice = cl_json_set_str(cl_json_set(jv_object(), "message", msg), "finish_reason", "stop");
    jv usage = cl_json_set_num(cl_json_set_num(jv_object(), "prompt_tokens", (double)tokens),
                               "completion_tokens", (double)tokens);
    return cl_json_set(cl_json_set(jv_object(), "choices", JV_ARRAY(choice)), "usage", usage);
}

/* The reply is "re: " + the last message's content. */
static void answer(cl_llm_call *c)
{
    const jv *msgs = cl_llm_call_messages(c);
    jv last = jv_array_get(jv_copy(*msgs), jv_array_length(jv_copy(*msgs)) - 1);
    char text[256];
    snprintf(text, sizeof text, "re: %s", cl_json_str(&last, "content"));
    jv_free(last);
    cl_llm_outcome o = {.response = reply_for(text, 1000)};
    cl_llm_attempt_done(c, &o);
}

static int script_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                       void **self, char **identity, cl_err *e)
{
    (void)llm, (void)rc, (void)cfg;
    script *s = calloc(1, sizeof *s);
    if (!strcmp(arg, "echo")) s->mode = ECHO;
    else if (!strcmp(arg, "flaky")) s->mode = FLAKY;
    else if (!strcmp(arg, "fatal")) s->mode = FATAL;
    else if (!strcmp(arg, "queued")) s->mode = QUEUED;
    else {
        free(s);
        return cl_err_set(e, CL_EXIT_CONFIG, "script: no mode '%s'", arg);
    }
    *self = s;
    *identity = strdup("script");
    return 0;
}

static void script_start(void *self, cl_llm_call *c)
{
    script *s = self;
    s->starts++;
    if (s->mode == QUEUED) {
        s->queue[s->nqueue++] = c;
        return;
    }
    if (s->mode == FATAL || (s->mode == FLAKY && cl_llm_call_attempt(c) == 1)) {
        cl_llm_outcome o = {.response = jv_invalid(), .retryable = s->mode == FLAKY, .retry_after_s = 0.01,
                            .status = CL_EXIT_CONFIG, .fatal_role = s->mode == FATAL,
                            .kind = CL_LLM_FAIL_HTTP, .http_status = s->mode == FLAKY ? 503 : 401};
        snprintf(o.error, sizeof o.error, "scripted failure");
        cl_llm_attempt_done(c, &o);
        return;
    }
    answer(c);
}

static void script_abort(void *self, cl_llm_call *c)
{
    script *s = self;
    for (int i = 0; i < s->nqueue; i++)
        if (s->queue[i] == c) {
            s->queue[i] = s->queue[--s->nqueue];
            cl_llm_outcome o = {.response = jv_invalid(), .status = CL_EXIT_TEMPFAIL};
            snprintf(o.error, sizeof o.error, "aborted");
            cl_llm_attempt_done(c, &o);
            return;
        }
}

static int script_busy(void *self) { return ((script *)self)->nqueue > 0; }

/* One call per step, oldest first, like a tiny engine. */
static void script_step(void *self)
{
    script *s = self;
    cl_llm_call *c = s->queue[0];
    memmove(s->queue, s->queue + 1, (size_t)--s->nqueue * sizeof *s->queue);
    answer(c);
}

static void script_close(void *self) { free(self); }

static const cl_llm_backend script_backend = {
    .scheme = "script", .open = script_open, .start = script_start, .abort = script_abort,
    .busy = script_busy, .step = script_step, .close = script_close};
static const cl_llm_backend *const extras[] = {&script_backend, NULL};

static script *role_script(cl_llm *llm);

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct tally {
    cl_llm *llm;
    int calls, ok, in_submit, bad_reentry, chain_left;
    int last_status, last_attempts, last_cached;
    char last_content[256], last_error[512];
    double last_latency;
    jv usage;
} tally;

static void on_done(void *ctx, const cl_llm_result *r)
{
    tally *t = ctx;
    if (t->in_submit)
        t->bad_reentry++;
    t->calls++;
    t->ok += r->status == 0;
    t->last_status = r->status;
    t->last_attempts = r->attempts;
    t->last_cached = r->cached;
    t->last_latency = r->latency_s;
    snprintf(t->last_content, sizeof t->last_content, "%s", r->content ? r->content : "");
    snprintf(t->last_error, sizeof t->last_error, "%s", r->error ? r->error : "");
    t->usage = cl_llm_usage_add(t->llm, t->usage, r);
    if (t->chain_left > 0) {
        t->chain_left--;
        t->in_submit = 1;
        cl_llm_submit(t->llm, 0, JV_ARRAY(cl_json_message("user", "again")), jv_null(), "k", on_done, t);
        t->in_submit = 0;
    }
}

static void submit(tally *t, const char *text, const char *key)
{
    t->in_submit = 1;
    cl_llm_submit(t->llm, 0, JV_ARRAY(cl_json_message("user", text)), jv_null(), key, on_done, t);
    t->in_submit = 0;
}

static cl_llm *client(const char *spec, const char *cache, int max_inflight, cl_err *e)
{
    cl_llm_role_config role = {.name = "assistant", .spec = spec, .params = jv_null()};
    cl_llm_config cfg = {.max_inflight = max_inflight, .retries = 3, .cache_dir = cache, .roles = &role,
                         .nroles = 1, .extra_backends = extras, .price_in = 1, .price_out = 2};
    return cl_llm_new(&cfg, e);
}

/* The backend state of role 0, found through a call: the test owns the only role. */
static script *g_script;
static int capture_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                        void **self, char **identity, cl_err *e)
{
    int rc2 = script_open(llm, arg, rc, cfg, self, identity, e);
    if (rc2 == 0)
        g_script = *self;
    return rc2;
}
static script *role_script(cl_llm *llm) { (void)llm; return g_script; }

/* ---- tests ------------------------------------------------------------------------------- */

static void callbacks_come_later_exactly_once_and_may_submit(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null(), .chain_left = 100};
    t.llm = client("script:echo", NULL, 4, &e);
    assert_non_null(t.llm);
    submit(&t, "hello", "a");
    assert_int_equal(t.calls, 0);            /* not from inside submit, even when synchronous */
    assert_int_equal(cl_llm_pending(t.llm), 1);
    assert_int_equal(cl_llm_run(t.llm), 0);
    assert_int_equal(t.calls, 101);          /* 1 + 100 submitted from callbacks */
    assert_int_equal(t.bad_reentry, 0);
    assert_int_equal(cl_llm_pending(t.llm), 0);
    assert_string_equal(t.last_content, "re: again");
    assert_int_equal((int)cl_json_num(&t.usage, "calls", 0), 101);
    assert_int_equal((int)cl_json_num(&t.usage, "prompt_tokens", 0), 101000);
    assert_true(cl_json_num(&t.usage, "cost_usd", 0) > 0.30 && cl_json_num(&t.usage, "cost_usd", 0) < 0.31);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void retryable_failures_are_retried(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    t.llm = client("script:flaky", NULL, 4, &e);
    submit(&t, "x", "a");
    cl_llm_run(t.llm);
    assert_int_equal(t.last_status, 0);
    assert_int_equal(t.last_attempts, 2);
    cl_llm_stats st;
    cl_llm_get_stats(t.llm, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.http_5xx, 1);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void a_fatal_error_fails_the_role_fast(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    const cl_llm_backend capture = {.scheme = "script", .open = capture_open, .start = script_start,
                                    .abort = script_abort, .busy = script_busy, .step = script_step,
                                    .close = script_close};
    const cl_llm_backend *const ex[] = {&capture, NULL};
    cl_llm_role_config role = {.name = "judge", .spec = "script:fatal", .params = jv_null()};
    cl_llm_config cfg = {.max_inflight = 1, .retries = 3, .roles = &role, .nroles = 1, .extra_backends = ex};
    t.llm = cl_llm_new(&cfg, &e);
    assert_non_null(t.llm);
    for (int i = 0; i < 5; i++)
        submit(&t, "x", "k");
    cl_llm_run(t.llm);
    assert_int_equal(t.calls, 5);
    assert_int_equal(t.ok, 0);
    assert_int_equal(role_script(t.llm)->starts, 1);   /* the others never reached the backend */
    assert_int_equal(t.last_status, CL_EXIT_CONFIG);
    assert_non_null(strstr(t.last_error, "role judge: scripted failure"));
    assert_int_equal(cl_llm_exit_status(t.llm), CL_EXIT_CONFIG);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void a_cpu_backend_is_stepped_by_the_loop_within_the_limit(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    t.llm = client("script:queued", NULL, 3, &e);
    for (int i = 0; i < 20; i++)
        submit(&t, "q", "k");
    cl_llm_step(t.llm, 0);
    cl_llm_stats st;
    cl_llm_get_stats(t.llm, &st);
    assert_true(st.inflight <= 3);
    assert_int_equal(cl_llm_run(t.llm), 0);
    assert_int_equal(t.ok, 20);
    cl_llm_get_stats(t.llm, &st);
    assert_int_equal(st.max_inflight_seen, 3);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void a_soft_stop_fails_queued_calls_and_finishes_running_ones(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    t.llm = client("script:queued", NULL, 2, &e);
    for (int i = 0; i < 10; i++)
        submit(&t, "q", "k");
    cl_llm_step(t.llm, 0);   /* two admitted */
    cl_llm_stop(t.llm, 0);
    assert_int_equal(cl_llm_run(t.llm), CL_EXIT_TEMPFAIL);
    assert_int_equal(t.calls, 10);
    assert_true(t.ok >= 2 && t.ok <= 3);
    assert_int_equal(cl_llm_exit_status(t.llm), CL_EXIT_TEMPFAIL);
    submit(&t, "late", "k");  /* after a stop: refused through the callback */
    cl_llm_run(t.llm);
    assert_int_equal(t.last_status, CL_EXIT_TEMPFAIL);
    assert_non_null(strstr(t.last_error, "interrupted"));
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void a_hard_stop_aborts_calls_in_flight(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    t.llm = client("script:queued", NULL, 4, &e);
    for (int i = 0; i < 6; i++)
        submit(&t, "q", "k");
    cl_llm_stop(t.llm, 1);
    assert_int_equal(cl_llm_run(t.llm), CL_EXIT_TEMPFAIL);
    assert_int_equal(t.calls, 6);
    assert_int_equal(t.ok, 0);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void the_budget_stops_new_calls(void **state)
{
    (void)state;
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    cl_llm_role_config role = {.name = "assistant", .spec = "script:echo", .params = jv_null()};
    /* each reply: 1000 + 1000 tokens at $1M per million = $3000; budget $5000 -> two calls */
    cl_llm_config cfg = {.max_inflight = 1, .roles = &role, .nroles = 1, .extra_backends = extras,
                         .price_in = 1e6, .price_out = 2e6, .budget_usd = 5000, .retries = -1};
    t.llm = cl_llm_new(&cfg, &e);
    for (int i = 0; i < 6; i++)
        submit(&t, "q", "k");
    assert_int_equal(cl_llm_run(t.llm), CL_EXIT_TEMPFAIL);
    assert_int_equal(t.calls, 6);
    assert_int_equal(t.ok, 2);
    assert_non_null(strstr(t.last_error, "budget reached"));
    jv st = cl_llm_stats_json(t.llm);
    assert_string_equal(cl_json_str(&st, "stopped"), "budget reached");
    jv_free(st);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void the_cache_replays_calls_and_keeps_samples_apart(void **state)
{
    (void)state;
    char dir[] = "/tmp/cl-llm-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    cl_err e = {0};
    tally t = {.usage = jv_null()};
    t.llm = client("script:echo", dir, 4, &e);
    submit(&t, "same", "s0");
    submit(&t, "same", "s1");
    cl_llm_run(t.llm);
    double lat = t.last_latency;
    cl_llm_free(t.llm);

    tally u = {.usage = jv_null()};
    u.llm = client("script:echo", dir, 4, &e);
    submit(&u, "same", "s1");
    cl_llm_run(u.llm);
    assert_int_equal(u.last_cached, 1);
    assert_int_equal(u.last_attempts, 0);
    assert_string_equal(u.last_content, "re: same");
    assert_true(u.last_latency == lat);
    submit(&u, "same", "s2");          /* a new sample key is a new call */
    cl_llm_run(u.llm);
    assert_int_equal(u.last_cached, 0);
    cl_llm_stats st;
    cl_llm_get_stats(u.llm, &st);
    assert_int_equal(st.cache_hits, 1);
    assert_int_equal(st.cache_writes, 1);
    cl_llm_free(u.llm);
    jv_free(t.usage);
    jv_free(u.usage);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void configuration_errors_are_exit_78(void **state)
{
    (void)state;
    cl_err e = {0};
    assert_null(client("nope:x", NULL, 1, &e));
    assert_int_equal(e.code, CL_EXIT_CONFIG);
    assert_non_null(strstr(e.msg, "known: openai, anthropic, azure, local, script"));
    assert_null(client("script:unknown-mode", NULL, 1, &e));
    assert_int_equal(e.code, CL_EXIT_CONFIG);

    tally t = {.usage = jv_null()};
    t.llm = client(NULL, NULL, 1, &e);          /* a role without a model */
    assert_non_null(t.llm);
    assert_false(cl_llm_role_configured(t.llm, 0));
    submit(&t, "x", "k");
    cl_llm_run(t.llm);
    assert_int_equal(t.last_status, CL_EXIT_CONFIG);
    assert_int_equal(cl_llm_exit_status(t.llm), CL_EXIT_CONFIG);
    t.in_submit = 1;
    cl_llm_submit(t.llm, 0, jv_string("not an array"), jv_null(), "k", on_done, &t);
    cl_llm_submit(t.llm, 7, jv_array(), jv_null(), "k", on_done, &t);
    t.in_submit = 0;
    cl_llm_run(t.llm);
    assert_int_equal(t.calls, 3);
    assert_int_equal(t.last_status, CL_EXIT_SOFTWARE);
    jv_free(t.usage);
    cl_llm_free(t.llm);
}

static void sample_keys_name_the_place_in_the_tree(void **state)
{
    (void)state;
    char k[64];
    assert_string_equal(cl_llm_sample_key(k, sizeof k, "rec7", 0, 3, 1, 0, 5), "rec7/t3/c1/f0/m5");
    assert_string_equal(cl_llm_sample_key(k, sizeof k, "rec7", 42, 3, -1, -1, -1), "rec7/s42/t3");
    assert_string_equal(cl_llm_sample_key(k, 8, "abcdefghij", 0, 1, 2, 3, 4), "abcdefg");
}

static void sha256_matches_the_standard_vectors(void **state)
{
    (void)state;
    char hex[65];
    cl_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cl_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cl_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    cl_sha256 s;
    cl_sha256_init(&s);
    char a[1000];
    memset(a, 'a', sizeof a);
    for (int i = 0; i < 1000; i++)
        cl_sha256_update(&s, a, sizeof a);   /* a million 'a', fed in uneven blocks */
    unsigned char d[32];
    cl_sha256_final(&s, d);
    assert_int_equal(d[0], 0xcd);
    assert_int_equal(d[31], 0xd0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(callbacks_come_later_exactly_once_and_may_submit),
        cmocka_unit_test(retryable_failures_are_retried),
        cmocka_unit_test(a_fatal_error_fails_the_role_fast),
        cmocka_unit_test(a_cpu_backend_is_stepped_by_the_loop_within_the_limit),
        cmocka_unit_test(a_soft_stop_fails_queued_calls_and_finishes_running_ones),
        cmocka_unit_test(a_hard_stop_aborts_calls_in_flight),
        cmocka_unit_test(the_budget_stops_new_calls),
        cmocka_unit_test(the_cache_replays_calls_and_keeps_samples_apart),
        cmocka_unit_test(configuration_errors_are_exit_78),
        cmocka_unit_test(sample_keys_name_the_place_in_the_tree),
        cmocka_unit_test(sha256_matches_the_standard_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
