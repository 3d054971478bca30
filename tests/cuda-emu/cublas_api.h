/* cublas_api.h (emulation) — the cuBLAS types that cuBLASLt's header brings (cublasLt.h here),
 * and cuBLASLt's status strings.  See cuda_runtime.h here. */
#ifndef CL_EMU_CUBLAS_API_H
#define CL_EMU_CUBLAS_API_H

#include "cuda_runtime.h"

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;

const char *cublasLtGetStatusString(cublasStatus_t s);

#endif
