/* libFuzzer driver: `make fuzz`, then build-fuzz/fuzz_lenient_json [corpus dir]. */
#include "targets.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_lenient_json(data, size);
    return 0;
}
