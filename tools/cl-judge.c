/* cl-judge — Score conversations with LLM judges and print the benchmark report.
 * Only the shared flags exist yet; the tool's work arrives with its issue and until then it
 * says so (exit 2) instead of producing anything. */
#include "cli.h"

int main(int argc, char **argv)
{
    const cl_cli cli = {
        .prog = "cl-judge",
        .synopsis = "[options] [FILE...]",
        .summary = "Score conversations with LLM judges and print the benchmark report.",
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_not_built("LLM judging");
}
