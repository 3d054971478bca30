/* libFuzzer driver: `make fuzz`, then build-fuzz/fuzz_chat [corpus dir]. */
#include "targets.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_chat(data, size);
    return 0;
}
