/* cl-pairs — MR-ranked turns into DPO pairs, SFT dialogues and next-turn states.
 * Today it is a record filter (--where/--map/--shard); the pairing modes come with the data
 * engine and say so when asked for. */
#include "cli.h"
#include "records.h"

enum { OPT_DPO = 256, OPT_SFT, OPT_ADVANCE };

static int on_opt(void *ctx, int opt, const char *arg, cl_err *e)
{
    (void)ctx;
    (void)arg;
    static const char *names[] = {"--dpo", "--sft", "--advance"};
    return cl_err_set(e, CL_EXIT_USAGE, "%s is not built yet", names[opt - OPT_DPO]);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dpo", no_argument, 0, OPT_DPO},
        {"sft", no_argument, 0, OPT_SFT},
        {"advance", no_argument, 0, OPT_ADVANCE},
        {0, 0, 0, 0},
    };
    const cl_cli cli = {
        .prog = "cl-pairs",
        .synopsis = "[options] [FILE...]",
        .summary = "Turn scored turns into DPO pairs, SFT dialogues and next-turn states.\n"
                   "Without a mode, copies records through the record options.",
        .options_help = "      --dpo           DPO pairs (not built yet)\n"
                        "      --sft           SFT dialogues (not built yet)\n"
                        "      --advance       next-turn states (not built yet)\n",
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
