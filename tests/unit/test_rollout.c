/* Unit tests for lib/collab/rollout, driven by an in-process scripted user and assistant plugged into
 * the LLM loop (no HTTP: the HTTP path is tested in tests/cli/t03*.t).  They check what the
 * command line cannot see: the sample key of every call, and the exact size of every tree
 * over a grid of K, S and w. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collab/conv.h"
#include "core/json.h"
#include "llm/llm.h"
#include "llm/backend.h"
#include "core/records.h"
#include "collab/rollout.h"

/* ---- the scripted backend ----------------------------------------------------------- */

/* Every sample key seen, to check their shape and that no two calls share one. */
static char *keys[20000];
static int nkeys;
static int user_ends_after; /* the user terminates once the assistant has replied this often */

static jv reply_for(const char *text)
{
    jv msg = cl_json_message("assistant", text);
    jv choice = cl_json_set_str(cl_json_set(jv_object(), "message", msg), "finish_reason", "stop");
    jv usage = cl_json_set_num(cl_json_set_num(jv_object(), "prompt_tokens", 10), "completion_tokens", 2);
    return cl_json_set(cl_json_set(jv_object(), "choices", JV_ARRAY(choice)), "usage", usage);
}

static int occurrences(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

static void scripted_start(void *self, cl_llm_call *c)
{
    (void)self;
    if (nkeys < (int)(sizeof keys / sizeof *keys))
        keys[nkeys++] = strdup(cl_llm_call_sample_key(c));
    const jv *msgs = cl_llm_call_messages(c);
    jv first = jv_array_get(jv_copy(*msgs), 0);
    const char *text = cl_json_str(&first, "content");
    char out[256];
    if (!strcmp(cl_llm_call_role_name(c), "user")) {
        int replies = occurrences(text, "**Assistant**:");
        snprintf(out, sizeof out, "{\"response\": \"user %d%s\"}", replies,
                 user_ends_after && replies >= user_ends_after ? " " CL_TERMINATE_MARKER : "");
    } else if (strstr(text, "helping a user with tasks such as writing")) {
        snprintf(out, sizeof out, "{'response': 'proactive'}");
    } else {
        snprintf(out, sizeof out, "assistant after %d messages", jv_array_length(jv_copy(*msgs)));
    }
    jv_free(first);
    cl_llm_outcome o = {.response = reply_for(out)};
    cl_llm_attempt_done(c, &o);
}

static int scripted_open(cl_llm *llm, const char *arg, const cl_llm_role_config *rc, const cl_llm_config *cfg,
                         void **self, char **identity, cl_err *e)
{
    (void)llm, (void)arg, (void)rc, (void)cfg, (void)e;
    *self = NULL;
    *identity = strdup("scripted");
    return 0;
}

static void scripted_abort(void *self, cl_llm_call *c) { (void)self, (void)c; }
static void scripted_close(void *self) { (void)self; }

static const cl_llm_backend scripted = {
    .scheme = "scripted", .open = scripted_open, .start = scripted_start,
    .abort = scripted_abort, .close = scripted_close, .no_cache = 1,
};

/* ---- running the engine -------------------------------------------------------------- */

/* Runs cfg over the records in `input` and returns the output records as a jv array. */
static jv run(cl_rollout_config *cfg, const char *input)
{
    char in[] = "/tmp/cl-rollout-in-XXXXXX", out[] = "/tmp/cl-rollout-out-XXXXXX";
    int fi = mkstemp(in), fo = mkstemp(out);
    assert_true(fi >= 0 && fo >= 0);
    assert_int_equal(write(fi, input, strlen(input)), (ssize_t)strlen(input));
    close(fi);
    close(fo);
    static const cl_llm_backend *const extra[] = {&scripted, NULL};
    cl_llm_role_config roles[] = {
        {.name = "assistant", .spec = "scripted:a", .params = jv_null()},
        {.name = "user", .spec = "scripted:u", .params = jv_null()},
    };
    cl_llm_config lc = {.max_inflight = 8, .retries = 0, .roles = roles, .nroles = 2, .extra_backends = extra};
    cl_err e = {0};
    cl_llm *llm = cl_llm_new(&lc, &e);
    assert_non_null(llm);
    cfg->user_role = cl_llm_role(llm, "user");
    cfg->assistant = (cl_rollout_source){.role = cl_llm_role(llm, "assistant"), .label = "a", .mode = cfg->assistant.mode};
    cfg->future = (cl_rollout_source){.role = cfg->assistant.role, .label = "a", .mode = CL_ASSISTANT_VANILLA};
    char *inputs[] = {in};
    cl_common c = {.output = out, .quiet = 1, .plain = 1, .inputs = inputs, .ninputs = 1};
    cl_io_opts o = {.assign_ids = 1};
    cl_io *io = cl_io_open(&c, &o, &e);
    assert_non_null(io);
    assert_int_equal(cl_rollout_run(cfg, llm, io, &e), 0);
    assert_int_equal(cl_io_close(io, &e), 0);
    cl_llm_free(llm);
    FILE *f = fopen(out, "r");
    jv all = jv_array();
    char line[1 << 16];
    while (fgets(line, sizeof line, f))
        all = jv_array_append(all, jv_parse(line));
    fclose(f);
    unlink(in);
    unlink(out);
    return all;
}

static cl_rollout_config base_config(cl_rollout_mode mode)
{
    return (cl_rollout_config){
        .mode = mode, .candidates = 2, .samples = 3, .window = 2, .max_turns = 7,
        .marker = CL_TERMINATE_MARKER, .userlm_end = "<|endconversation|>", .proact_ratio = 0.5,
        .parse_retries = 1, .buffer = 16, .admit_queue = 8, .assistant = {.mode = CL_ASSISTANT_MIXED},
    };
}

static void free_keys(void)
{
    for (int i = 0; i < nkeys; i++)
        free(keys[i]);
    nkeys = 0;
}

static int key_seen(const char *k)
{
    for (int i = 0; i < nkeys; i++)
        if (!strcmp(keys[i], k))
            return 1;
    return 0;
}

static void tree_sizes_follow_k_s_w(void **state)
{
    (void)state;
    user_ends_after = 0;
    for (int k = 1; k <= 3; k++)
        for (int s = 0; s <= 2; s++)
            for (int w = 0; w <= 2; w++) {
                cl_rollout_config cfg = base_config(CL_ROLLOUT_BRANCH);
                cfg.candidates = k, cfg.samples = s, cfg.window = w;
                jv out = run(&cfg, "{\"id\":\"a\",\"prompt\":\"g\"}\n{\"id\":\"b\",\"prompt\":\"g\"}\n");
                assert_int_equal(jv_array_length(jv_copy(out)), 2);
                jv r = jv_array_get(jv_copy(out), 1);
                assert_string_equal(cl_json_str(&r, "id"), "b");
                assert_int_equal(cl_branch_ncandidates(&r), k);
                for (int c = 0; c < k; c++) {
                    assert_int_equal(cl_branch_nfutures(&r, c), w ? s : 0);
                    for (int f = 0; f < (w ? s : 0); f++) {
                        jv conv = cl_branch_future_conversation(&r, c, f);
                        /* opening + candidate + 2w messages, alternating from the user */
                        assert_int_equal(jv_array_length(jv_copy(conv)), 2 + 2 * w);
                        assert_int_equal(cl_conv_turns(&conv), 1 + w);
                        jv_free(conv);
                    }
                }
                jv usage = cl_json_get(&r, "usage");
                assert_int_equal((int)cl_json_num(&usage, "calls", -1), 1 + k + 2 * w * k * s);
                assert_int_equal(nkeys, 2 * (1 + k + 2 * w * k * s));
                jv_free(usage);
                jv_free(r);
                jv_free(out);
                free_keys();
            }
}

static void every_call_has_its_own_sample_key(void **state)
{
    (void)state;
    user_ends_after = 0;
    cl_rollout_config cfg = base_config(CL_ROLLOUT_BRANCH);
    cfg.seed = 42;
    jv out = run(&cfg, "{\"id\":\"r7\",\"prompt\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                       "{\"role\":\"assistant\",\"content\":\"a\"}]}\n");
    jv_free(out);
    assert_int_equal(nkeys, 1 + 2 + 2 * 2 * 2 * 3);
    for (int i = 0; i < nkeys; i++)
        for (int j = i + 1; j < nkeys; j++)
            assert_string_not_equal(keys[i], keys[j]);
    /* record id, seed, turn (one reply so far), candidate, future, message within the future */
    assert_true(key_seen("r7/s42/t1/u"));
    assert_true(key_seen("r7/s42/t1/c0"));
    assert_true(key_seen("r7/s42/t1/c1"));
    assert_true(key_seen("r7/s42/t1/c1/f2/m0"));
    assert_true(key_seen("r7/s42/t1/c0/f0/m3"));
    assert_false(key_seen("r7/s42/t1/c0/f0/m4"));
    free_keys();

    cfg = base_config(CL_ROLLOUT_FULL);
    cfg.max_turns = 2;
    out = run(&cfg, "{\"id\":\"z\",\"prompt\":\"g\"}\n");
    jv r = jv_array_get(jv_copy(out), 0);
    assert_string_equal(cl_json_str(&r, "done_reason"), "max_turns");
    jv_free(r);
    jv_free(out);
    assert_int_equal(nkeys, 4);
    assert_true(key_seen("z/s0/full/m0") && key_seen("z/s0/full/m1") && key_seen("z/s0/full/m3"));
    free_keys();
}

static void full_conversations_end_at_the_marker_or_the_cap(void **state)
{
    (void)state;
    user_ends_after = 2;
    cl_rollout_config cfg = base_config(CL_ROLLOUT_FULL);
    jv out = run(&cfg, "{\"id\":\"a\",\"prompt\":\"g\"}\n");
    jv r = jv_array_get(jv_copy(out), 0);
    assert_string_equal(cl_json_str(&r, "done_reason"), "terminated");
    assert_int_equal((int)cl_json_num(&r, "turn", -1), 2);
    jv m = cl_state_messages(&r);
    assert_int_equal(jv_array_length(jv_copy(m)), 5);
    assert_true(cl_conv_has_marker(cl_conv_content(&m, -1), CL_TERMINATE_MARKER));
    jv_free(m);
    jv_free(r);
    jv_free(out);
    free_keys();

    cfg.max_turns = 1;
    out = run(&cfg, "{\"id\":\"a\",\"prompt\":\"g\"}\n");
    r = jv_array_get(jv_copy(out), 0);
    assert_string_equal(cl_json_str(&r, "done_reason"), "max_turns");
    assert_int_equal((int)cl_json_num(&r, "turn", -1), 1);
    jv_free(r);
    jv_free(out);
    free_keys();
    user_ends_after = 0;
}

static void futures_stop_at_the_marker_and_say_so(void **state)
{
    (void)state;
    user_ends_after = 2; /* the second user turn of every future ends it */
    cl_rollout_config cfg = base_config(CL_ROLLOUT_BRANCH);
    cfg.window = 3;
    jv out = run(&cfg, "{\"id\":\"a\",\"prompt\":\"g\"}\n");
    jv r = jv_array_get(jv_copy(out), 0);
    for (int c = 0; c < 2; c++)
        for (int f = 0; f < 3; f++) {
            jv fut = cl_branch_future(&r, c, f);
            jv m = cl_state_messages(&fut);
            assert_true(cl_json_bool(&fut, "terminated", 0) == 1);
            assert_int_equal(jv_array_length(jv_copy(m)), 3); /* user, assistant, user + marker */
            jv_free(m);
            jv_free(fut);
        }
    jv_free(r);
    jv_free(out);
    free_keys();
    user_ends_after = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_sizes_follow_k_s_w),
        cmocka_unit_test(every_call_has_its_own_sample_key),
        cmocka_unit_test(full_conversations_end_at_the_marker_or_the_cap),
        cmocka_unit_test(futures_stop_at_the_marker_and_say_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
