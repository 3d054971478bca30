#!/bin/sh
# Training tokens/s (forward + CE + backward + clipping + AdamW; full fine-tuning and LoRA r 32
# on all seven projections) of a GPT-2-small-sized Llama (d 768, 12 layers, 12 heads, SwiGLU 2048,
# vocab 32000) in C — GEMM backend openblas (the default) and the built-in kernel ("cpu", its
# micro-kernel chosen per CPU; CL_CPU=avx2 forces the AVX2 one) — against the same model
# in PyTorch CPU (bench/torch_train.py, Debian python3-torch), same threads, same batch.
# Env: B (2), T (256), STEPS (2 timed after 1 warm-up; a run reports their median), ROUNDS (3),
# OMP_NUM_THREADS (2).
#
# The peers run alternating, ROUNDS times over, so a shared machine's load falls on all of them
# alike; the table gives medians over the rounds and the ratios of each round's pair.  PyTorch
# runs twice a round: with its defaults, and with OPENBLAS_THREAD_TIMEOUT=4, which lets the
# worker threads of its OpenBLAS (its own pthreads, which OMP_WAIT_POLICY does not reach) sleep
# at once after a product instead of spinning about 0.1 s — the spinning counts as CPU time and,
# on a busy machine, takes cores from the OpenMP threads.  Each round's ratio is against the
# better of those two PyTorch runs (lower CPU for the CPU ratio, lower wall time for the wall
# one), so the peer is never handicapped.  CPU seconds are what a loaded machine distorts least.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$ROOT" build/tests/model-bench-train build/tests/model-bench-gemm >/dev/null
: "${OMP_NUM_THREADS:=2}" "${B:=2}" "${T:=256}" "${STEPS:=2}" "${ROUNDS:=3}" "${OMP_WAIT_POLICY:=passive}"
# passive: idle OpenMP workers of both peers sleep, so CPU seconds count work, not spinning
export OMP_NUM_THREADS OMP_WAIT_POLICY
have_torch=1
/usr/bin/python3 -c 'import torch' 2>/dev/null || have_torch=0
res=$(mktemp)
trap 'rm -f "$res"' EXIT
echo "### Training throughput, GPT-2-small-sized Llama, batch ${B}x${T} ($(date -u +%Y-%m-%d), $(nproc) cores," \
     "OMP_NUM_THREADS=$OMP_NUM_THREADS, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, CL_CPU=${CL_CPU:-unset}," \
     "$ROUNDS rounds)"
echo
sh "$ROOT/bench/cpu.sh"
echo
torch_version=-
[ $have_torch = 0 ] || torch_version=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')
best_isa=$(CL_CPU=${CL_CPU:-} "$ROOT/build/tests/model-bench-gemm" isa)
for round in $(seq "$ROUNDS"); do
    for mode in full lora; do
        if [ $have_torch = 1 ]; then
            set -- $(/usr/bin/python3 "$ROOT/bench/torch_train.py" $mode "$B" "$T" "$STEPS" "$OMP_NUM_THREADS")
            echo "$round $mode torch $5 $8" >>"$res"
            set -- $(OPENBLAS_THREAD_TIMEOUT=4 /usr/bin/python3 "$ROOT/bench/torch_train.py" $mode "$B" "$T" "$STEPS" \
                     "$OMP_NUM_THREADS")
            echo "$round $mode torch-sleep $5 $8" >>"$res"
        fi
        # the built-in kernel twice: the best this CPU runs, then forced to AVX2 (what an AVX2-only
        # CPU would run) unless CL_CPU already chose
        for run in openblas cpu cpu/avx2; do
            isa=${CL_CPU:-}; [ $run = cpu/avx2 ] && { [ -z "$isa" ] || continue; isa=avx2; }
            set -- $(CL_CPU=$isa "$ROOT/build/tests/model-bench-train" $mode "$B" "$T" "$STEPS" ${run%/*})
            echo "$round $mode $(echo $run | tr / -) $5 $8" >>"$res"
        done
    done
done
awk -v tok=$((B * T)) -v rounds="$ROUNDS" -v tv="$torch_version" -v isa="$best_isa" '
function median(list,    a, n, i, j, x) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    r = $1; m = $2; k = $3
    wall[m, k] = wall[m, k] " " $4; cpu[m, k] = cpu[m, k] " " $5
    w[r, m, k] = $4; c[r, m, k] = $5
    if (k ~ /^torch/) {
        if (!((r, m) in pw) || $4 < pw[r, m]) pw[r, m] = $4
        if (!((r, m) in pc) || $5 < pc[r, m]) pc[r, m] = $5
    }
    if (!((m, k) in seen)) { seen[m, k] = 1; order[m] = order[m] " " k }
}
END {
    name["torch"] = "PyTorch " tv ", defaults"
    name["torch-sleep"] = "PyTorch " tv ", OPENBLAS_THREAD_TIMEOUT=4"
    name["openblas"] = "C, GEMM backend openblas"
    name["cpu"] = "C, GEMM backend cpu (" isa ")"
    name["cpu-avx2"] = "C, GEMM backend cpu (avx2)"
    print "| mode | peer | wall s/step | tokens/s | PyTorch / C, wall | CPU s/step | PyTorch / C, CPU | CPU ratio, each round | rounds >= 1.5 (CPU) |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (mi = 1; mi <= 2; mi++) {
        m = mi == 1 ? "full" : "lora"
        nk = split(order[m], ks, " ")
        for (ki = 1; ki <= nk; ki++) {
            k = ks[ki]
            mw = median(wall[m, k]); mc = median(cpu[m, k])
            rw = ""; rc = ""; each = ""; hits = 0
            if (k !~ /^torch/ && (1, m) in pc) {
                for (r = 1; r <= rounds; r++) {
                    x = pc[r, m] / c[r, m, k]
                    rw = rw " " pw[r, m] / w[r, m, k]; rc = rc " " x
                    each = each (r > 1 ? ", " : "") sprintf("%.2f", x); hits += x >= 1.5
                }
                rw = sprintf("%.2f", median(rw)); rc = sprintf("%.2f", median(rc)); hits = hits "/" rounds
            } else { rw = rc = each = hits = "-" }
            printf "| %s | %s | %.3f | %.1f | %s | %.3f | %s | %s | %s |\n", m, name[k], mw, tok / mw, rw, mc, rc, each, hits
        }
    }
}' "$res"
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
[ $have_torch = 1 ] || echo "SKIP: PyTorch peer (python3-torch not installed)"
