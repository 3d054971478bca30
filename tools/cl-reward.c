/* cl-reward — local metrics (BLEU, pass rate, answer equivalence, tokens), R* and MR.
 * Today it is a record filter (--where/--map/--shard); the metrics say they are not built yet. */
#include "cli.h"
#include "records.h"

enum { OPT_METRIC = 256 };

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    (void)ctx;
    (void)opt;
    (void)arg;
    return cl_err_set(e, CL_EXIT_USAGE, "--metric is not built yet");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"metric", required_argument, 0, OPT_METRIC},
        {0, 0, 0, 0},
    };
    const cl_cli cli = {
        .prog = "cl-reward",
        .synopsis = "[options] [FILE...]",
        .summary = "Compute local metrics, R* and the multiturn-aware reward (MR).\n"
                   "Without a metric, copies records through the record options.",
        .options_help = "      --metric NAME   a local metric (not built yet)\n",
        .opts = opts,
        .on_opt = on_opt,
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_err e = {0};
    cl_io *io = cl_io_open(&c, NULL, &e);
    if (!io)
        cl_die_err(&e);
    return cl_io_finish(io, cl_io_passthrough(io, &e), &e);
}
