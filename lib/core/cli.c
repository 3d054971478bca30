#include "core/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    OPT_HELP = 0x1000, OPT_VERSION, OPT_SEED, OPT_SHARD, OPT_WHERE, OPT_MAP, OPT_STATS,
    OPT_SKIP_BAD, OPT_REJECTS, OPT_LEVEL, OPT_THREADS, OPT_PROGRESS, OPT_NO_PROGRESS
};

static const struct option common_opts[] = {
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, OPT_VERSION},
    {"output", required_argument, 0, 'o'},
    {"quiet", no_argument, 0, 'q'},
    {"progress", required_argument, 0, OPT_PROGRESS},
    {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
    {"plain", no_argument, 0, 'Z'},
    {"seed", required_argument, 0, OPT_SEED},
    {"stats", required_argument, 0, OPT_STATS},
    {"level", required_argument, 0, OPT_LEVEL},
    {"threads", required_argument, 0, OPT_THREADS},
};
static const struct option record_opts[] = {
    {"shard", required_argument, 0, OPT_SHARD},
    {"where", required_argument, 0, OPT_WHERE},
    {"map", required_argument, 0, OPT_MAP},
    {"skip-bad", no_argument, 0, OPT_SKIP_BAD},
    {"rejects", required_argument, 0, OPT_REJECTS},
};
#define N_COMMON (sizeof common_opts / sizeof common_opts[0])
#define N_RECORD (sizeof record_opts / sizeof record_opts[0])

static const char common_help[] =
    "Common options:\n"
    "  -o, --output FILE   write records to FILE instead of standard output\n"
    "  -Z, --plain         write plain JSONL (default: zstd unless stdout is a terminal)\n"
    "      --level N       zstd level (default 3, or CL_ZSTD_LEVEL)\n"
    "      --threads N     zstd worker threads (default 0 = single-threaded)\n"
    "  -q, --quiet         no progress and no summary on stderr\n"
    "      --progress SECS a progress line every SECS seconds when stderr is not a\n"
    "                      terminal (default 30; 0 = none); a terminal's is redrawn live\n"
    "      --no-progress   no progress at all (the summary stays)\n"
    "      --seed N        seed for every random choice (default 0)\n"
    "      --stats FILE    write run statistics as JSON to FILE\n"
    "  -h, --help          show this help and exit\n"
    "      --version       show the version and exit\n";
static const char record_help[] =
    "Record options:\n"
    "      --where JQ      keep only records for which the jq program JQ is truthy\n"
    "      --map JQ        replace each record by the outputs of the jq program JQ\n"
    "      --shard I/N     process only shard I (0-based) of N, by record id or position\n"
    "      --skip-bad      count and report malformed lines instead of stopping (exit 65)\n"
    "      --rejects FILE  copy malformed lines (and failed records) to FILE\n";
static const char exit_help[] =
    "Exit status: 0 ok, 1 some records failed, 2 usage, 65 bad input, 66 missing input,\n"
    "69/75 service unavailable/temporary failure, 70 internal error, 74 write error,\n"
    "78 missing configuration (API key, model), 141 the output's reader went away.\n";

static const char *g_prog = "cl";

void cl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", g_prog);
    exit(CL_EXIT_USAGE);
}

void cl_not_built(const char *what)
{
    fprintf(stderr, "%s: %s is not built yet\n", g_prog, what);
    exit(CL_EXIT_USAGE);
}

int cl_parse_double(const char *s, double lo, double hi, const char *what, double *out, cl_err *e)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi))
        return cl_err_set(e, CL_EXIT_USAGE, "%s: '%s' is not a number in [%g, %g]", what, s, lo, hi);
    *out = v;
    return 0;
}

int cl_parse_long(const char *s, long lo, long hi, const char *what, long *out, cl_err *e)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return cl_err_set(e, CL_EXIT_USAGE, "%s: '%s' is not an integer in [%ld, %ld]", what, s, lo, hi);
    *out = v;
    return 0;
}

int cl_parse_int(const char *s, int lo, int hi, const char *what, int *out, cl_err *e)
{
    long v;
    if (cl_parse_long(s, lo, hi, what, &v, e) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

double cl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void help(const cl_cli *cli)
{
    printf("Usage: %s %s\n%s\n\n", cli->prog, cli->synopsis, cli->summary);
    if (cli->options_help)
        printf("Options:\n%s\n", cli->options_help);
    if (cli->records)
        printf("%s\n", record_help);
    printf("%s\n%sSee %s(1).\n", common_help, exit_help, cli->prog);
}

void cl_cli_parse(const cl_cli *cli, int argc, char **argv, cl_common *c)
{
    size_t ntool = 0;
    while (cli->opts && cli->opts[ntool].name)
        ntool++;
    /* Fixed storage: usage errors exit from inside the loop, and nothing should be left for
     * LeakSanitizer to report. */
    static struct option all[128];
    if (ntool + N_COMMON + N_RECORD + 1 > sizeof all / sizeof all[0])
        cl_die(CL_EXIT_SOFTWARE, "too many options");
    size_t n = 0;
    for (size_t i = 0; i < ntool; i++)
        all[n++] = cli->opts[i];
    for (size_t i = 0; i < N_COMMON; i++)
        all[n++] = common_opts[i];
    if (cli->records)
        for (size_t i = 0; i < N_RECORD; i++)
            all[n++] = record_opts[i];
    char shorts[128];
    snprintf(shorts, sizeof shorts, "ho:qZ%s", cli->shortopts ? cli->shortopts : "");

    g_prog = cli->prog;
    cl_set_progname(cli->prog);
    memset(c, 0, sizeof *c);
    c->plain = -1;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    int tty = isatty(STDERR_FILENO);
    c->color = tty && !(nc && *nc) && !(term && strcmp(term, "dumb") == 0);

    cl_err e = {0};
    double every = -1; /* --progress; -1 = not given */
    int no_progress = 0;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
        switch (opt) {
        case 'h': help(cli); exit(0);
        case OPT_VERSION: printf("%s (cl) %s\n", cli->prog, CL_VERSION); exit(0);
        case 'o': c->output = optarg; break;
        case 'q': c->quiet = 1; break;
        case OPT_PROGRESS:
            if (cl_parse_double(optarg, 0, 1e6, "--progress", &every, &e) < 0) cl_usage_error("%s", e.msg);
            break;
        case OPT_NO_PROGRESS: no_progress = 1; break;
        case 'Z': c->plain = 1; break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || *optarg == '-')
                cl_usage_error("--seed: '%s' is not a non-negative integer", optarg);
            c->seed = s;
            break;
        }
        case OPT_STATS: c->stats = optarg; break;
        case OPT_LEVEL:
            if (cl_parse_int(optarg, -7, 22, "--level", &c->level, &e) < 0) cl_usage_error("%s", e.msg);
            break;
        case OPT_THREADS:
            if (cl_parse_int(optarg, 0, 256, "--threads", &c->threads, &e) < 0) cl_usage_error("%s", e.msg);
            break;
        case OPT_SHARD: {
            unsigned i, k;
            char tail;
            if (sscanf(optarg, "%u/%u%c", &i, &k, &tail) != 2 || k == 0 || i >= k)
                cl_usage_error("--shard: '%s' is not I/N with 0 <= I < N", optarg);
            c->shard_i = i;
            c->shard_n = k;
            break;
        }
        case OPT_WHERE: c->where = optarg; break;
        case OPT_MAP: c->map = optarg; break;
        case OPT_SKIP_BAD: c->skip_bad = 1; break;
        case OPT_REJECTS: c->rejects = optarg; break;
        case '?':
            if (optopt && optopt < 256 && optopt != '?')
                cl_usage_error("unknown or incomplete option '-%c'", optopt);
            cl_usage_error("unknown option or missing argument: '%s'", argv[optind - 1]);
        case ':':
            cl_usage_error("option needs an argument: '%s'", argv[optind - 1]);
        default:
            if (!cli->on_opt || cli->on_opt(cli->ctx, opt, optarg, &e) < 0)
                cl_usage_error("%s", e.msg[0] ? e.msg : "unexpected option");
        }
    }
    c->inputs = argv + optind;
    c->ninputs = argc - optind;
    if (!cli->records && c->ninputs > 0)
        cl_usage_error("unexpected argument '%s'", argv[optind]);
    /* On a terminal the line is redrawn in place; elsewhere (a log, make, a pipeline's
     * stderr) plain lines at a slow pace keep a long run visibly alive without flooding. */
    if (no_progress)
        every = 0;
    c->progress = tty && !c->quiet && every != 0;
    c->progress_every = tty || c->quiet ? 0 : every < 0 ? 30 : every;
}
