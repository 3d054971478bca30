#!/bin/sh
# One line naming the machine a benchmark ran on: CPU model, the ISA levels the kernels dispatch
# on (which of avx2, fma, avx512f/bw/vl, avx512_bf16, avx512_vnni the CPU has), CPUs and load.
# Every bench/bench-*.sh prints it above its table, and BENCHMARKS.md keeps it with the numbers:
# the same code picks other kernels on another CPU.
model=$(awk -F: '/^model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo 2>/dev/null)
flags=$(awk -F: '/^flags/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
isa=""
for f in sse4_2 avx fma avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile; do
    case " $flags " in *" $f "*) isa="$isa $f" ;; esac
done
[ -n "$isa" ] || isa=" none of the x86 levels (uname -m: $(uname -m))"
echo "CPU: ${model:-unknown} ($(nproc) CPUs); ISA:$isa; load $(cut -d' ' -f1-3 /proc/loadavg)"
