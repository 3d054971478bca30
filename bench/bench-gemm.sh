#!/bin/sh
# GEMM GFLOP/s of the built-in packed kernel against OpenBLAS cblas_sgemm, measured in the same
# process on the shapes of one training step of a d=768 / ffn 2048 / vocab 32000 Llama at 1024
# tokens.  Builds the BLAS=openblas variant (it holds both).  OpenBLAS runs with its own thread
# pool, as users call it; OMP_WAIT_POLICY=passive keeps idle OpenMP workers from spinning on
# the cores OpenBLAS then needs.  Env: REPS (default 5), OMP_NUM_THREADS (default 2);
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are reported as found.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$ROOT" BLAS=openblas build-blas/tests/model-bench-gemm >/dev/null
: "${OMP_NUM_THREADS:=2}" "${OMP_WAIT_POLICY:=passive}"
export OMP_NUM_THREADS OMP_WAIT_POLICY
echo "### GEMM: built-in kernel vs OpenBLAS ($(date -u +%Y-%m-%d), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS," \
     "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}," \
     "load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
"$ROOT/build-blas/tests/model-bench-gemm" "${REPS:-5}"
