/* cl-reward — local metrics (BLEU, pass rate, answer equivalence, tokens), R* and MR.
 * Flags and wiring: lib/collab/score reads the records in batches, scores them in parallel and writes
 * them in input order.
 * Without a metric or a reward it is a record filter (--where/--map/--shard). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/records.h"
#include "collab/rm_start.h"
#include "collab/score.h"

enum {
    OPT_METRIC = 256, OPT_REWARD, OPT_WEIGHTS, OPT_TASK_METRIC, OPT_LAMBDA, OPT_TOKENS,
    OPT_SCOPE, OPT_ROLES, OPT_BATCH, OPT_TIMEOUT, OPT_CPU, OPT_MEM, OPT_FSIZE, OPT_SCRATCH, OPT_NPROC,
    OPT_PYTHON, OPT_NO_SECCOMP, OPT_NO_NS, OPT_MATH_EXTRACT, OPT_RM, OPT_RM_API_BASE, OPT_RM_RETRIES
};

typedef struct opts {
    score_cfg sc;
    sandbox_cfg sb;
    long batch;
    const char *tiktoken_file;     /* the tokenizer file of tiktoken:/tokenizer: */
    const char *cmd_program;       /* --metric cmd:PROGRAM */
    const char *rm_spec, *rm_api_base; /* --rm, --rm-api-base */
    long rm_retries;                   /* --rm-retries; -1: the client's default */
    int set_tokens, set_scope, set_roles;
} opts;

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    opts *o = ctx;
    switch (opt) {
    case OPT_METRIC: return score_parse_metric_arg(arg, &o->sc.metrics, &o->cmd_program, e);
    case OPT_REWARD:
        if (o->sc.reward.mode != REWARD_NONE)
            return cl_err_set(e, CL_EXIT_USAGE, "give one of --reward and --weights");
        return reward_parse_mode(arg, &o->sc.reward, e);
    case OPT_WEIGHTS:
        if (o->sc.reward.mode != REWARD_NONE)
            return cl_err_set(e, CL_EXIT_USAGE, "give one of --reward and --weights");
        return reward_parse_weights(arg, &o->sc.reward, e);
    case OPT_TASK_METRIC: o->sc.reward.task_metric = arg; return 0;
    case OPT_LAMBDA: return cl_parse_double(arg, 0, 1e9, "--lambda", &o->sc.reward.lambda, e);
    case OPT_TOKENS:
        o->set_tokens = 1;
        return tokens_parse_method(arg, &o->sc.tokens, &o->tiktoken_file, e);
    case OPT_MATH_EXTRACT: return score_parse_math_extract(arg, &o->sc.math, e);
    case OPT_SCOPE: o->set_scope = 1; return score_parse_scope(arg, &o->sc.scope, e);
    case OPT_ROLES: o->set_roles = 1; return score_parse_roles(arg, &o->sc.roles, e);
    case 'j': return cl_parse_int(arg, 1, 256, "--jobs", &o->sc.jobs, e);
    case OPT_BATCH: return cl_parse_long(arg, 1, 1 << 20, "--batch", &o->batch, e);
    case OPT_TIMEOUT: return cl_parse_double(arg, 0.1, 86400, "--timeout", &o->sb.wall_s, e);
    case OPT_CPU: return cl_parse_double(arg, 0, 86400, "--cpu", &o->sb.cpu_s, e);
    case OPT_MEM: return cl_parse_long(arg, 0, 1 << 24, "--mem", &o->sb.mem_mb, e);
    case OPT_FSIZE: return cl_parse_long(arg, 0, 1 << 24, "--fsize", &o->sb.fsize_mb, e);
    case OPT_SCRATCH: return cl_parse_long(arg, 1, 1 << 20, "--scratch", &o->sb.scratch_mb, e);
    case OPT_NPROC: return cl_parse_long(arg, 0, 1 << 20, "--nproc", &o->sb.nproc, e);
    case OPT_PYTHON: o->sb.python = arg; return 0;
    case OPT_NO_SECCOMP: o->sb.seccomp = 0; return 0;
    case OPT_NO_NS: o->sb.namespaces = 0; return 0;
    case OPT_RM: o->rm_spec = arg; return 0;
    case OPT_RM_API_BASE: o->rm_api_base = arg; return 0;
    case OPT_RM_RETRIES: return cl_parse_long(arg, 0, 100, "--rm-retries", &o->rm_retries, e);
    default: return cl_err_set(e, CL_EXIT_SOFTWARE, "unhandled option");
    }
}

/* A reward mode brings its own token count (collabllm.md §1.4) unless flags say otherwise. */
static void apply_mode_defaults(opts *o)
{
    reward_mode m = o->sc.reward.mode;
    if (m == REWARD_PAPER || m == REWARD_V2 || m == REWARD_VERL)
        o->sc.metrics |= SCORE_TOKENS;
    if (m == REWARD_V2) {
        if (!o->set_scope)
            o->sc.scope = SCOPE_SESSION;
        if (!o->set_roles)
            o->sc.roles = ROLES_ASSISTANT;
    }
    if (m == REWARD_VERL && !o->set_tokens)
        o->sc.tokens = TOKENS_WORDS;
}

/* The counter the tokens metric uses, loaded; words outside verl's recipe is said to be a
 * stand-in, since it reads about half of cl100k on math and code (collabllm(7)). */
static cl_tokenizer *load_counter(const opts *o, int quiet)
{
    if (!(o->sc.metrics & SCORE_TOKENS))
        return NULL;
    if (o->sc.tokens == TOKENS_WORDS && o->sc.reward.mode != REWARD_VERL && !quiet)
        cl_warn("--tokens words: whitespace words, not the paper's cl100k_base tokens "
                "(about half as many on math and code)");
    if (o->sc.tokens == TOKENS_USAGE || o->sc.tokens == TOKENS_WORDS)
        return NULL;
    cl_err e = {0};
    cl_tokenizer *tk = tokens_load(o->sc.tokens, o->tiktoken_file, &e);
    if (!tk && o->sc.tokens == TOKENS_CL100K && e.code == CL_EXIT_NOINPUT) {
        cl_err hint = {0};
        cl_err_set(&hint, e.code, "%.900s; --tokens words counts words instead", e.msg);
        cl_die_err(&hint);
    }
    if (!tk)
        cl_die_err(&e);
    return tk;
}

/* --metric rm_score: the reward model is asked by cl-judge --rm-units beside this program. */
static metric_cmd *start_rm(const opts *o, int quiet)
{
    if (!(o->sc.metrics & SCORE_RM)) {
        if (o->rm_spec || o->rm_api_base || o->rm_retries >= 0)
            cl_usage_error("--rm, --rm-api-base and --rm-retries belong to --metric rm_score");
        return NULL;
    }
    if (!o->rm_spec)
        cl_usage_error("--metric rm_score needs the reward model: --rm SPEC");
    const char *url = o->rm_api_base ? o->rm_api_base : getenv("CL_RM_BASE_URL");
    cl_err e = {0};
    metric_cmd *m = cl_rm_start(o->rm_spec, url, o->rm_retries, quiet, &e);
    if (!m)
        cl_die_err(&e);
    return m;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"metric", required_argument, 0, OPT_METRIC},
        {"reward", required_argument, 0, OPT_REWARD},
        {"weights", required_argument, 0, OPT_WEIGHTS},
        {"task-metric", required_argument, 0, OPT_TASK_METRIC},
        {"lambda", required_argument, 0, OPT_LAMBDA},
        {"tokens", required_argument, 0, OPT_TOKENS},
        {"math-extract", required_argument, 0, OPT_MATH_EXTRACT},
        {"token-scope", required_argument, 0, OPT_SCOPE},
        {"token-roles", required_argument, 0, OPT_ROLES},
        {"jobs", required_argument, 0, 'j'},
        {"batch", required_argument, 0, OPT_BATCH},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"cpu", required_argument, 0, OPT_CPU},
        {"mem", required_argument, 0, OPT_MEM},
        {"fsize", required_argument, 0, OPT_FSIZE},
        {"scratch", required_argument, 0, OPT_SCRATCH},
        {"nproc", required_argument, 0, OPT_NPROC},
        {"python", required_argument, 0, OPT_PYTHON},
        {"no-seccomp", no_argument, 0, OPT_NO_SECCOMP},
        {"no-namespaces", no_argument, 0, OPT_NO_NS},
        {"rm", required_argument, 0, OPT_RM},
        {"rm-api-base", required_argument, 0, OPT_RM_API_BASE},
        {"rm-retries", required_argument, 0, OPT_RM_RETRIES},
        {0, 0, 0, 0},
    };
    opts o = {.sb = sandbox_defaults(), .batch = 0, .sc.tokens = TOKENS_CL100K, .rm_retries = -1};
    o.sc.reward.lambda = -1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.sc.jobs = cores > 0 ? (int)cores : 1;
    const cl_cli cli = {
        .prog = "cl-reward",
        .synopsis = "[options] [FILE...]",
        .summary = "Compute local metrics, R* and the multiturn-aware reward (MR) of branch\n"
                   "records (each future of each candidate) or whole conversations.\n"
                   "Without a metric or a reward, copies records through the record options.",
        .options_help =
            "      --metric LIST   bleu, bleu-word, pass_rate, math, tokens, rm_score (comma list),\n"
            "                      and last cmd:PROGRAM: a program reading one JSON unit a line and\n"
            "                      writing one object of scores a line (one process, batched)\n"
            "                      bleu, bleu-word: also the corpus BLEU of the stream (NLTK\n"
            "                      corpus_bleu, sacreBLEU corpus_score), in the summary and --stats\n"
            "                      rm_score: a reward model's score of the whole conversation\n"
            "      --rm SPEC       the reward model of rm_score: a model spec (cl-llm(7)) whose\n"
            "                      reply is the score as a number; key in CL_RM_API_KEY\n"
            "      --rm-api-base URL  its endpoint (default CL_RM_BASE_URL, OPENAI_BASE_URL)\n"
            "      --rm-retries N  further attempts of a failed call (default 6)\n"
            "      --reward MODE   paper | v2 | verl: R* per future, MR per candidate\n"
            "      --weights SPEC  R* = sum of w*score, e.g. 'bleu=1,interactivity=1,tokens=-5e-4'\n"
            "      --task-metric NAME  task score for paper/v2/verl (default by task)\n"
            "      --lambda X      paper: token weight (default 1e-4 document, 5e-4 code, math)\n"
            "      --math-extract E  boxed answers for math: reference (the MATH benchmark's\n"
            "                      extraction, quirks included; default) or lenient (also\n"
            "                      \\fbox, \\boxed 5, trimmed)\n"
            "      --tokens M      cl100k (the paper's count; default, verl: words) | usage\n"
            "                      (the visible reply's share of each call's completion tokens)\n"
            "                      | words | tiktoken:FILE (a .tiktoken rank file)\n"
            "                      | tokenizer:FILE (a model's tokenizer.json)\n"
            "      --token-scope S forward | session (default forward; v2: session)\n"
            "      --token-roles R all | assistant | user (default all; v2: assistant)\n"
            "  -j, --jobs N        parallel workers, BLEU and sandboxes (default: cores)\n"
            "      --batch N       records scored together (default 256; 32 when only bleu and\n"
            "                      bleu-word are asked for)\n"
            "      --timeout S     sandbox wall-clock limit per test (default 241, BigCodeBench's)\n"
            "      --cpu S         sandbox CPU limit (default 0: none, as BigCodeBench)\n"
            "      --mem MB        sandbox address-space limit (default 307200, the official\n"
            "                      300*1024; 0: none)\n"
            "      --fsize MB      sandbox file-size limit (default 64)\n"
            "      --scratch MB    the sandbox's only writable space: a tmpfs on /tmp holding the\n"
            "                      work directory, also on /var/tmp and /dev/shm (default 128)\n"
            "      --nproc N       sandbox process limit (default 64)\n"
            "      --python PATH   interpreter for pass_rate (default python3 from /usr/local/bin,\n"
            "                      /usr/bin, /bin, never from PATH)\n"
            "      --no-seccomp    do not install the seccomp filter\n"
            "      --no-namespaces do not use namespaces\n",
        .opts = lopts,
        .shortopts = "j:",
        .on_opt = on_opt,
        .ctx = &o,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    if (o.sc.reward.mode == REWARD_NONE && (o.sc.reward.task_metric || o.sc.reward.lambda >= 0))
        cl_usage_error("--task-metric and --lambda need --reward");
    apply_mode_defaults(&o);
    cl_err e = {0};
    cl_tokenizer *tk = load_counter(&o, c.quiet);
    o.sc.tk = tk;
    if (o.sc.metrics & SCORE_PASS_RATE) {
        o.sc.sb = sandbox_new(&o.sb, &e);
        if (!o.sc.sb)
            cl_die_err(&e);
        if (!c.quiet)
            cl_warn("sandbox: %s", sandbox_protections(o.sc.sb));
    }
    cl_io *io = cl_io_open(&c, NULL, &e);
    if (!io)
        cl_die_err(&e);
    if (o.cmd_program && !(o.sc.cmd = metric_cmd_start(o.cmd_program, &e)))
        cl_die_err(&e);
    o.sc.rm_cmd = start_rm(&o, c.quiet);
    int status;
    if (!o.sc.metrics && !o.sc.cmd && o.sc.reward.mode == REWARD_NONE)
        status = cl_io_passthrough(io, &e);
    else
        status = score_records(io, &o.sc, (int)o.batch, &e);
    /* The program's own end is part of the run: a crash at exit or extra lines fail it too. */
    if (o.sc.cmd && metric_cmd_finish(o.sc.cmd, NULL, &e) != 0)
        status = -1;
    /* cl-judge --rm-units exits 69, 75 or 78 when the reward model's calls gave up (the
     * records concerned have failed already); any other failure of it is one of the run. */
    int rm_status = 0;
    if (o.sc.rm_cmd && metric_cmd_finish(o.sc.rm_cmd, &rm_status, &e) != 0 && status == 0) {
        if (rm_status == CL_EXIT_UNAVAILABLE || rm_status == CL_EXIT_TEMPFAIL || rm_status == CL_EXIT_CONFIG)
            e = (cl_err){0};
        else
            status = -1;
    }
    int rc = cl_io_finish(io, status, &e);
    /* Records whose reward-model call gave up failed on their own (1); a service that was
     * unreachable or refused says more. */
    if (status == 0 && rm_status && rc <= 1)
        rc = rm_status;
    sandbox_free(o.sc.sb);
    cl_tokenizer_free(tk);
    return rc;
}
