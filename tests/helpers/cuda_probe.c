/* cuda_probe — exits 0 when this build has CUDA and the machine a CUDA GPU (printing its name),
 * 1 otherwise (saying why), so tests and scripts/device-check pick the device path or skip
 * loudly. */
#include <stdio.h>

#ifdef CL_HAVE_CUDA
#include "cuda/cuda.h"
#endif

int main(void)
{
#ifdef CL_HAVE_CUDA
    int n = cl_cuda_device_count();
    if (n <= 0) {
        fprintf(stderr, "cuda_probe: no CUDA GPU on this machine\n");
        return 1;
    }
    char name[256];
    size_t mem = 0;
    if (cl_cuda_describe(0, name, sizeof name, &mem)) {
        fprintf(stderr, "cuda_probe: GPU 0 cannot be queried\n");
        return 1;
    }
    printf("%s\t%zu\n", name, mem);
    return 0;
#else
    fprintf(stderr, "cuda_probe: built without CUDA (make CUDA=1)\n");
    return 1;
#endif
}
