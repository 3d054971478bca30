/* cuda_bf16.h (emulation) — the bf16 storage type, as its 16 bits; see cuda_runtime.h here. */
#ifndef CL_EMU_CUDA_BF16_H
#define CL_EMU_CUDA_BF16_H

typedef struct {
    unsigned short bits;
} __nv_bfloat16;

#endif
