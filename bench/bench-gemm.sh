#!/bin/sh
# GEMM GFLOP/s of the built-in packed kernel — once per ISA micro-kernel the CPU runs (avx512,
# avx2, generic), forced with cl_gemm_isa_use in one process — against OpenBLAS cblas_sgemm (the
# default backend), on the shapes of one training step of a d=768 / ffn 2048 / vocab 32000 Llama
# at 1024 tokens.  Two tables: one thread each (the per-core kernel quality), then
# OMP_NUM_THREADS threads for the built-in kernel against OpenBLAS's own pool of as many.  The
# kernels take turns within each repetition, so a busy moment on a shared machine falls on all.
# OMP_WAIT_POLICY=passive keeps idle OpenMP workers from spinning on the cores OpenBLAS then
# needs.  Env: REPS (default 5), OMP_NUM_THREADS (default 2); OPENBLAS_CORETYPE as found.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${O:=$ROOT/build}"
make -s -C "$ROOT" "$O/tests/model-bench-gemm" >/dev/null
: "${OMP_NUM_THREADS:=2}" "${OMP_WAIT_POLICY:=passive}"
export OMP_WAIT_POLICY
for th in 1 "$OMP_NUM_THREADS"; do
    echo "### GEMM: built-in kernels vs OpenBLAS, $th thread(s) ($(date -u +%Y-%m-%d), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
    echo
    sh "$ROOT/bench/cpu.sh"
    echo
    OMP_NUM_THREADS=$th OPENBLAS_NUM_THREADS=$th "$O/tests/model-bench-gemm" "${REPS:-5}"
    echo
    echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
done
