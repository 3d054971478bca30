/* libFuzzer driver: `make fuzz`, then build-fuzz/fuzz_rows [corpus dir]. */
#include "targets.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_rows(data, size);
    return 0;
}
