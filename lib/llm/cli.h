/* llm/cli.h — the LLM flags every tool that talks to models shares.
 *
 * Owns: the option table and --help text for the client settings (--api-base, --max-inflight,
 * --rpm, --tpm, --timeout, --retries, --cache, --no-cache, --cache-tag, --price, --budget-usd, ...) and for
 * each role the tool declares (--ROLE SPEC, --ROLE-temperature, --ROLE-top-p, --ROLE-max-tokens,
 * --ROLE-max-completion-tokens, --ROLE-seed, --ROLE-stop, --ROLE-n, --ROLE-param, --ROLE-header,
 * --ROLE-api-base, --ROLE-api-key-env); turning them plus the environment into a
 * cl_llm_config; the default cache directory; Ctrl-C handling; the closing report.
 * Must not know: what the tool does with replies.  man/cl-llm.7 is the reference text.
 *
 * Use from a tool (see tests/helpers/llmcall.c):
 *
 *     static const cl_llm_cli_role roles[] = {
 *         {"assistant", "the assistant", 1.0, 1024}, {"user", "the user simulator", 1.0, 512},
 *         {0}};
 *     cl_llm_cli lc;
 *     cl_llm_cli_init(&lc, roles, my_opts, my_help);
 *     cl_cli cli = {..., .opts = lc.opts, .options_help = lc.help, .on_opt = on_opt, .ctx = &st};
 *     // in on_opt:  int r = cl_llm_cli_opt(&st->lc, opt, arg, e); if (r) return r < 0 ? -1 : 0;
 *     cl_cli_parse(&cli, argc, argv, &c);
 *     cl_llm *llm = cl_llm_cli_open(&lc, &c, &e);     // NULL: cl_die_err(&e), exit 78
 *     cl_io *io = cl_io_open(&c, NULL, &e);
 *     cl_llm_cli_attach(&lc, llm, io);                // progress text, SIGINT/SIGTERM
 *     ... submit, cl_llm_run / cl_llm_step ...
 *     int rc = cl_llm_cli_finish(&lc, llm, io, st, &e); // --stats "llm", summary, exit status
 *     cl_llm_free(llm); cl_llm_cli_free(&lc);
 *
 * The tool's own options must use `val` below CL_LLM_CLI_OPT_BASE. */
#ifndef CL_LLM_CLI_H
#define CL_LLM_CLI_H

#include <getopt.h>

#include "core/cli.h"
#include "llm/llm.h"
#include "core/records.h"

#define CL_LLM_CLI_OPT_BASE 0x2000

/* A role the tool has, with the defaults it wants sent when the user gives no flag. */
typedef struct cl_llm_cli_role {
    const char *name;       /* "assistant": gives --assistant SPEC and --assistant-* flags */
    const char *what;       /* "the assistant under test", for --help */
    double temperature;     /* default sampling temperature (always sent) */
    long max_tokens;        /* default max_tokens (always sent; 0 = not sent) */
} cl_llm_cli_role;

typedef struct cl_llm_cli {
    struct option *opts;    /* the tool's options followed by the LLM ones, {0}-terminated */
    char *help;             /* the tool's help text followed by the LLM flags' help */
    int quiet;              /* set by cl_llm_cli_open from -q */
    /* Backends beyond the built-in ones, for cl_llm_config.extra_backends (the tools put the
     * offline world's scheme here); NULL = none.  Set before cl_llm_cli_open. */
    const struct cl_llm_backend *const *extra_backends;
    /* private */
    const cl_llm_cli_role *roles_;
    int nroles_;
    struct cl_llm_cli_state *s_;
} cl_llm_cli;

/* roles: terminated by an entry with name NULL.  tool_opts ({0}-terminated) and tool_help
 * (preformatted, may be NULL) are the tool's own. */
void cl_llm_cli_init(cl_llm_cli *lc, const cl_llm_cli_role *roles, const struct option *tool_opts,
                     const char *tool_help);

/* Handles opt if it is one of the LLM options: 1 = handled, 0 = not ours, -1 = bad value
 * (e set, a usage error). */
int cl_llm_cli_opt(cl_llm_cli *lc, int opt, const char *arg, cl_err *e);

/* Builds the client from the flags, the environment and the defaults (cache under
 * $XDG_CACHE_HOME/cl or ~/.cache/cl unless --no-cache; --seed seeds the jitter).  Roles with
 * no spec stay unconfigured.  NULL with e set (exit 78) on a bad spec or cache directory. */
cl_llm *cl_llm_cli_open(cl_llm_cli *lc, const cl_common *c, cl_err *e);

/* Shows LLM progress (in flight, tokens, cost) on the progress line of io, and makes the
 * first SIGINT/SIGTERM stop admitting calls (in-flight ones finish and are cached) and a
 * second one abort those too.  io may be NULL. */
void cl_llm_cli_attach(cl_llm_cli *lc, cl_llm *llm, cl_io *io);

/* Adds "llm" (cl_llm_stats_json) to --stats and its summary to the end of io's closing line
 * unless -q.  io may be NULL (then the summary is a line of its own).  Also gives SIGINT/SIGTERM back to their default
 * action, so the client may be freed afterwards. */
void cl_llm_cli_report(cl_llm_cli *lc, const cl_llm *llm, cl_io *io);

void cl_llm_cli_free(cl_llm_cli *lc);

/* The status a tool exits with when the run as a whole stopped: 128 + the signal's number after
 * SIGINT or SIGTERM (130, 143: the shell's convention for a program ended by a signal), else
 * cl_llm_run_status (78 configuration, 75 budget or rate limits, 69 unavailable); 0 when
 * nothing stopped the run and no call gave up. */
int cl_llm_cli_exit_status(const cl_llm_cli *lc, const cl_llm *llm);

/* Ends a tool's run over io: cl_llm_cli_report, cl_io_finish(io, status, e), and the exit
 * status: cl_llm_cli_exit_status when the records alone would give 0 or 1 (an interrupt, a
 * budget or an unreachable service says more than "some records failed"), else cl_io_finish's.
 * The client is left to the caller to free. */
int cl_llm_cli_finish(cl_llm_cli *lc, const cl_llm *llm, cl_io *io, int status, cl_err *e);

#endif
