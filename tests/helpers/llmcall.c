/* llmcall — drives the LLM client from tests and benchmarks, the way cl-rollout will.
 *
 *   llmcall [LLM options] [--chain K] [--gen N] [--show-cached] [FILE...]
 *
 * Each input record {"id", "role"?, "messages", "params"?, "key"?} becomes one call to the
 * role's model (default assistant) with sample key "key" (default the id); the record comes
 * out, in input order, with "reply", "finish_reason" and "usage" added, or with "error" when
 * the call finally failed (exit 1).  --chain K makes K calls per record, each submitted from
 * the previous one's callback with the reply and a new user message appended (a conversation
 * in miniature), replies in "replies".  --gen N makes N records itself (for benchmarks).
 * --show-cached adds "cached" and "attempts", which differ between a run and its replay.
 * --discard writes nothing (a benchmark of the client alone); failures still set the exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "llm/cli.h"
#include "core/records.h"
#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

enum { OPT_CHAIN = 256, OPT_GEN, OPT_SHOW_CACHED, OPT_DISCARD };

typedef struct slot {
    jv rec;           /* the record being completed */
    jv messages;      /* the conversation so far (chain) */
    jv replies;
    jv usage;
    char *key;
    int role, calls_done, done;
    char *error;
    char *src;        /* copied: the reader's name goes away with its input */
    uint64_t lineno;
    long cached, attempts;
    struct run *run;
} slot;

typedef struct run {
    cl_llm_cli lc;
    cl_llm *llm;
    cl_io *io;
    long chain, gen;
    int show_cached;
    int discard;      /* benchmarks: count replies, build and write no records */
    long failures;
    slot **slots;     /* by record index */
    size_t nslots, cap, next_out;
    int write_failed;
    cl_err e;
} run;

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    run *R = ctx;
    int r = cl_llm_cli_opt(&R->lc, opt, arg, e);
    if (r)
        return r < 0 ? -1 : 0;
    switch (opt) {
    case OPT_CHAIN: return cl_parse_long(arg, 1, 1000, "--chain", &R->chain, e);
    case OPT_GEN: return cl_parse_long(arg, 0, 100000000, "--gen", &R->gen, e);
    case OPT_SHOW_CACHED: R->show_cached = 1; return 0;
    case OPT_DISCARD: R->discard = 1; return 0;
    }
    return cl_err_set(e, CL_EXIT_USAGE, "unexpected option");
}

static void on_reply(void *ctx, const cl_llm_result *r);

static void submit_next(slot *s)
{
    char key[1100];
    cl_llm_sample_key(key, sizeof key, s->key, 0, -1, -1, -1, s->calls_done);
    jv params = cl_json_get(&s->rec, "params");
    cl_llm_submit(s->run->llm, s->role, jv_copy(s->messages), jv_is_valid(params) ? params : jv_null(),
                  s->run->chain > 1 ? key : s->key, on_reply, s);
}

/* Writes finished slots in input order. */
static void flush_ready(run *R)
{
    while (R->next_out < R->nslots && R->slots[R->next_out]->done) {
        slot *s = R->slots[R->next_out];
        jv v = s->rec;
        if (R->chain > 1)
            v = cl_json_set(v, "replies", s->replies);
        else {
            jv_free(s->replies);
        }
        v = cl_json_set(v, "usage", s->usage);
        if (R->show_cached) {
            v = cl_json_set_num(v, "cached", (double)s->cached);
            v = cl_json_set_num(v, "attempts", (double)s->attempts);
        }
        int rc = 0;
        if (R->discard) {
            R->failures += s->error != NULL;
            jv_free(v);
        } else if (s->error) {
            cl_rec where = {.src = s->src, .lineno = s->lineno};
            rc = cl_io_fail(R->io, &where, v, s->error, &R->e);
        } else
            rc = cl_io_put(R->io, v, &R->e);
        if (rc < 0 && !R->write_failed) {
            R->write_failed = 1;
            cl_llm_stop(R->llm, 1);
        }
        jv_free(s->messages);
        free(s->key);
        free(s->error);
        free(s->src);
        free(s);
        R->slots[R->next_out++] = NULL;
    }
}

static void on_reply(void *ctx, const cl_llm_result *r)
{
    slot *s = ctx;
    run *R = s->run;
    s->calls_done++;
    s->cached += r->cached;
    s->attempts += r->attempts;
    if (!R->discard)
        s->usage = cl_llm_usage_add(R->llm, s->usage, r);
    if (r->status) {
        s->error = strdup(r->error);
        s->done = 1;
    } else {
        jv reply = r->content ? jv_string(r->content) : jv_null();
        if (R->discard)
            ;
        else if (R->chain > 1)
            s->replies = jv_array_append(s->replies, jv_copy(reply));
        else {
            s->rec = cl_json_set(s->rec, "reply", jv_copy(reply));
            s->rec = cl_json_set(s->rec, "finish_reason", r->finish_reason ? jv_string(r->finish_reason) : jv_null());
        }
        if (s->calls_done < R->chain) {
            char next[64];
            snprintf(next, sizeof next, "go on (%d)", s->calls_done);
            s->messages = jv_array_append(s->messages, cl_json_message("assistant", r->content ? r->content : ""));
            s->messages = jv_array_append(s->messages, cl_json_message("user", next));
            jv_free(reply);
            submit_next(s); /* from inside the callback: the loop must allow it */
            return;
        }
        jv_free(reply);
        s->done = 1;
    }
    flush_ready(R);
}

static slot *new_slot(run *R, jv rec, const char *src, uint64_t lineno)
{
    slot *s = calloc(1, sizeof *s);
    if (!s || (R->nslots == R->cap && !(R->slots = realloc(R->slots, (R->cap = R->cap ? 2 * R->cap : 1024) * sizeof *R->slots))))
        cl_die(CL_EXIT_SOFTWARE, "out of memory");
    R->slots[R->nslots++] = s;
    s->run = R;
    s->rec = rec;
    s->src = strdup(src);
    s->lineno = lineno;
    s->replies = jv_array();
    s->usage = jv_null();
    const char *role = cl_json_str(&s->rec, "role");
    s->role = cl_llm_role(R->llm, role ? role : "assistant");
    const char *key = cl_json_str(&s->rec, "key");
    const char *id = cl_json_str(&s->rec, "id");
    char idbuf[32];
    if (!key && !id) {
        snprintf(idbuf, sizeof idbuf, "rec%zu", R->nslots - 1);
        id = idbuf;
    }
    s->key = strdup(key ? key : id);
    s->messages = cl_json_get(&s->rec, "messages");
    return s;
}

int main(int argc, char **argv)
{
#ifdef CL_HAVE_CUDA
    cl_device_register(cl_cuda_open); /* local:DIR+device=cuda */
#endif
    static const cl_llm_cli_role roles[] = {
        {"assistant", "the assistant", 1.0, 256}, {"user", "the user simulator", 1.0, 256},
        {"judge", "the judge", 0.0, 256}, {0}};
    static const struct option opts[] = {
        {"chain", required_argument, 0, OPT_CHAIN},
        {"gen", required_argument, 0, OPT_GEN},
        {"show-cached", no_argument, 0, OPT_SHOW_CACHED},
        {"discard", no_argument, 0, OPT_DISCARD},
        {0, 0, 0, 0}};
    run R = {.chain = 1};
    cl_llm_cli_init(&R.lc, roles, opts,
                    "      --chain K       K calls per record, each from the previous one's callback\n"
                    "      --gen N         make N records instead of reading any\n"
                    "      --show-cached   add \"cached\" and \"attempts\" to each record\n"
                    "      --discard       write no records, only count failures (benchmarks)\n");
    const cl_cli cli = {
        .prog = "llmcall", .synopsis = "[options] [FILE...]",
        .summary = "Send each record's messages to a model through the cl LLM client (a test driver).",
        .options_help = R.lc.help, .opts = R.lc.opts, .on_opt = on_opt, .ctx = &R, .records = 1};
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_err e = {0};
    if (!(R.llm = cl_llm_cli_open(&R.lc, &c, &e)))
        cl_die_err(&e);
    if (!(R.io = cl_io_open(&c, NULL, &e)))
        cl_die_err(&e);
    cl_llm_cli_attach(&R.lc, R.llm, R.io);

    /* Feed records while the client has room, as a streaming tool does: reading ahead only
     * as far as the in-flight window keeps memory flat however long the input. */
    long window = 4096, made = 0;
    int eof = 0, status = 0;
    while (!eof || cl_llm_pending(R.llm) > 0) {
        while (!eof && cl_llm_pending(R.llm) < window) {
            if (R.gen) {
                if (made == R.gen) {
                    eof = 1;
                    break;
                }
                char id[32], text[64];
                snprintf(id, sizeof id, "g%ld", made);
                snprintf(text, sizeof text, "benchmark request %ld", made++);
                jv rec = cl_json_set_str(jv_object(), "id", id);
                rec = cl_json_set(rec, "messages", JV_ARRAY(cl_json_message("user", text)));
                submit_next(new_slot(&R, rec, "gen", (uint64_t)made));
                continue;
            }
            cl_rec rec;
            int rc = cl_io_next(R.io, &rec, &e);
            if (rc < 0) {
                status = -1;
                cl_llm_stop(R.llm, 1);
            }
            if (rc <= 0) {
                eof = 1;
                break;
            }
            submit_next(new_slot(&R, jv_copy(*cl_rec_value(&rec)), rec.src, rec.lineno));
        }
        if (cl_llm_pending(R.llm) > 0)
            cl_llm_step(R.llm, 1.0);
    }
    flush_ready(&R);
    if (R.write_failed && status == 0) {
        e = R.e;
        status = -1;
    }
    cl_llm_cli_report(&R.lc, R.llm, R.io);
    int llm_status = cl_llm_cli_exit_status(&R.lc, R.llm);
    cl_llm_free(R.llm);
    cl_llm_cli_free(&R.lc);
    free(R.slots);
    int rc = cl_io_finish(R.io, status, &e);
    if (rc == 0 && R.failures) {
        cl_warn("%ld calls failed", R.failures);
        rc = CL_EXIT_FAILED;
    }
    /* A stop (budget, interrupt) or a fatal role error outranks "some records failed". */
    return rc > CL_EXIT_FAILED || !llm_status ? rc : llm_status;
}
