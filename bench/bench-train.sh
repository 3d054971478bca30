#!/bin/sh
# Training tokens/s (forward + CE + backward + clipping + AdamW; full fine-tuning and LoRA r 32
# on all seven projections) of a GPT-2-small-sized Llama (d 768, 12 layers, 12 heads, SwiGLU 2048,
# vocab 32000) in C — GEMM backend openblas (the default) and the built-in kernel ("cpu", its
# micro-kernel chosen per CPU; CL_CPU=avx2 forces the AVX2 one) — against the same model
# in PyTorch CPU (bench/torch_train.py, Debian python3-torch), same threads, same batch.
# Env: B (2), T (256), STEPS (2 timed after 1 warm-up; medians), OMP_NUM_THREADS (2).
# Wall-clock ratios hold on an idle machine; the CPU-seconds ratio is what a loaded one distorts least.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$ROOT" build/tests/model-bench-train build/tests/model-bench-gemm >/dev/null
: "${OMP_NUM_THREADS:=2}" "${B:=2}" "${T:=256}" "${STEPS:=2}" "${OMP_WAIT_POLICY:=passive}"
# passive: idle OpenMP workers of both peers sleep, so CPU seconds count work, not spinning
export OMP_NUM_THREADS OMP_WAIT_POLICY
have_torch=1
/usr/bin/python3 -c 'import torch' 2>/dev/null || have_torch=0
echo "### Training throughput, GPT-2-small-sized Llama, batch ${B}x${T} ($(date -u +%Y-%m-%d), $(nproc) cores," \
     "OMP_NUM_THREADS=$OMP_NUM_THREADS, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, CL_CPU=${CL_CPU:-unset})"
echo
sh "$ROOT/bench/cpu.sh"
echo
echo "| mode | peer | s/step (median) | tokens/s | C / PyTorch | CPU s/step | C / PyTorch, CPU |"
echo "|---|---|---|---|---|---|---|"
for mode in full lora; do
    torch_tps=""
    if [ $have_torch = 1 ]; then
        set -- $(/usr/bin/python3 "$ROOT/bench/torch_train.py" $mode "$B" "$T" "$STEPS" "$OMP_NUM_THREADS")
        torch_tps=$6 torch_cpu=$8
        echo "| $mode | PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') | $5 | $6 | 1.00 | $8 | 1.00 |"
    fi
    # the built-in kernel twice: the best this CPU runs, then forced to AVX2 (what an AVX2-only
    # CPU would run) unless CL_CPU already chose
    for run in openblas cpu cpu/avx2; do
        isa=${CL_CPU:-}; [ $run = cpu/avx2 ] && { [ -z "$isa" ] || continue; isa=avx2; }
        set -- $(CL_CPU=$isa "$ROOT/build/tests/model-bench-train" $mode "$B" "$T" "$STEPS" ${run%/*})
        ratio=- cratio=-
        [ -n "$torch_tps" ] && ratio=$(awk "BEGIN { printf \"%.2f\", $6 / $torch_tps }") &&
            cratio=$(awk "BEGIN { printf \"%.2f\", $torch_cpu / $8 }")
        label="C, GEMM backend $2"; [ $2 = cpu ] && label="$label ($(CL_CPU=$isa "$ROOT/build/tests/model-bench-gemm" isa))"
        echo "| $mode | $label | $5 | $6 | $ratio | $8 | $cratio |"
    done
done
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
[ $have_torch = 1 ] || echo "SKIP: PyTorch peer (python3-torch not installed)"
