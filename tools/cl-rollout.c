/* cl-rollout — Run the collaborative simulation: assistant and user-simulator conversations.
 * Only the shared flags exist yet; the tool's work arrives with its issue and until then it
 * says so (exit 2) instead of producing anything. */
#include "cli.h"

int main(int argc, char **argv)
{
    const cl_cli cli = {
        .prog = "cl-rollout",
        .synopsis = "[options] [FILE...]",
        .summary = "Run the collaborative simulation: assistant and user-simulator conversations.",
        .records = 1,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_not_built("the collaborative simulation");
}
