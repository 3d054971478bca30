#!/bin/sh
# GEMM GFLOP/s of the built-in packed kernel — once per ISA micro-kernel the CPU runs (avx512,
# avx2, generic), forced with cl_gemm_isa_use in one process — against OpenBLAS cblas_sgemm (the
# default backend), on the shapes of one training step of a d=768 / ffn 2048 / vocab 32000 Llama
# at 1024 tokens.  The kernels take turns within each repetition, so a busy moment on a shared
# machine falls on all of them.  Tables:
#   1. one thread each, OpenBLAS with the kernels it picks for this CPU;
#   2. one thread each, OpenBLAS forced to its AVX2 kernels (OPENBLAS_CORETYPE=Haswell): the
#      peer an AVX2-only CPU gets, for the built-in avx2 kernel;
#   3. OMP_NUM_THREADS threads for the built-in kernel against OpenBLAS's own pool of as many.
# One-thread tables count GFLOP per CPU second of the process (on a loaded machine that measures
# the kernels, not the scheduler); the threaded one per wall-clock second.  OMP_WAIT_POLICY=passive
# keeps idle OpenMP workers from spinning on the cores OpenBLAS then needs.
# Env: REPS (default 5), OMP_NUM_THREADS (default 2).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${O:=$ROOT/build}"
make -s -C "$ROOT" "$O/tests/model-bench-gemm" >/dev/null
: "${OMP_NUM_THREADS:=2}" "${OMP_WAIT_POLICY:=passive}"
export OMP_WAIT_POLICY
threads=$OMP_NUM_THREADS
table() { # title, threads, clock, OPENBLAS_CORETYPE
    echo "### GEMM: built-in kernels vs OpenBLAS, $1 ($(date -u +%Y-%m-%d))"
    echo
    sh "$ROOT/bench/cpu.sh"
    echo
    if [ -n "$4" ]; then export OPENBLAS_CORETYPE="$4"; else unset OPENBLAS_CORETYPE; fi
    OMP_NUM_THREADS=$2 OPENBLAS_NUM_THREADS=$2 "$O/tests/model-bench-gemm" "${REPS:-5}" "$3"
    echo
    echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
}
table "one thread" 1 cpu ""
table "one thread, OpenBLAS on its AVX2 kernels" 1 cpu Haswell
table "$threads threads" "$threads" wall ""
