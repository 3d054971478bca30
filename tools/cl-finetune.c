/* cl-finetune — Fine-tune Llama/Qwen2-family models with SFT or DPO (LoRA or full).
 * Only the shared flags exist yet; the tool's work arrives with its issue and until then it
 * says so (exit 2) instead of producing anything. */
#include "cli.h"

int main(int argc, char **argv)
{
    const cl_cli cli = {
        .prog = "cl-finetune",
        .synopsis = "[options]",
        .summary = "Fine-tune Llama/Qwen2-family models with SFT or DPO (LoRA or full).",
        .records = 0,
    };
    cl_common c;
    cl_cli_parse(&cli, argc, argv, &c);
    cl_not_built("fine-tuning");
}
