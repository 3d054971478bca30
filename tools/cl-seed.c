/* cl-seed — Turn datasets (MATH, BigCodeBench, Medium, Abg-CoQA, any JSONL) into seed tasks.
 * Only the shared flags exist yet; the tool's work arrives with its issue and until then it
 * says so (exit 2) instead of producing anything. */
#include "cli.h"

int main(int argc, char **argv)
{
    const cl_cli cli = {
        .prog = "cl-seed",
        .synopsis = "[options] [FILE...]",
        .summary = "Turn datasets (MATH, BigCodeBench, Medium, Abg-CoQA, any JSONL) into seed tasks.",
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_not_built("reading datasets (--preset)");
}
