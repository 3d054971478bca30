#!/bin/sh
# Decode throughput of the local: engine (lib/model/engine.c, lib/model/linear.c) against
# llama.cpp (node-llama-cpp, pinned in tests/npm) on the same model's GGUF exports and a
# PyTorch greedy loop (bench/torch_decode.py, Debian python3-torch) on the same safetensors,
# same threads, same run: batch-1 decode of a llama2.c-sized 15M model and a ~110M model
# (random weights, vocabulary 32000), fp32 and bf16 (llama.cpp also f16: our engine has no f16
# kernel, its bf16 rows read as many bytes); the memory-bandwidth limit; aggregate
# decode with 32 and 128 sequences in one continuous batch against our own batch 1 and
# llama.cpp's parallel sequences.  The machine is shared: wall-clock rates move with the load,
# so every row also gives CPU-milliseconds per token, which move much less (for one thread);
# each figure is the median of REPS runs, ours and the peer's alternating.
# Then the same engine inside the LLM loop: cl-rollout --full and --branch with local: assistant
# and user on the 15M model, 1, 32 and 128 calls in flight (--max-inflight), REPS rounds of every
# width in turn, each width's ratio to one call in flight taken within a round.
# The ceiling part bounds what batching can reach on this machine: one step's products at the
# faster of OpenBLAS and our kernel, everything else free, against batch 1 in the same run.
# Env: OMP_NUM_THREADS (1: the figure that survives a loaded machine), NEW (tokens, 128),
# REPS (3), PARTS ("decode ceiling rollout").
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# O: the build directory, absolute as `make bench` passes it (which has built the helpers) or
# relative to the checkout (then built here)
O=${O:-build}
case $O in
/*) ;;
*) make -s -C "$ROOT" "$O/tests/model-bench-decode" "$O/tests/tok" >/dev/null && O=$ROOT/$O ;;
esac
BD="$O/tests/model-bench-decode"
: "${OMP_NUM_THREADS:=1}" "${NEW:=128}" "${REPS:=3}" "${PARTS:=decode ceiling rollout}"
export OMP_NUM_THREADS
W=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-local.XXXXXX")
trap 'rm -rf "$W"' EXIT
NPM="$ROOT/tests/npm"
have_llama=1
[ -d "$NPM/node_modules/node-llama-cpp" ] && command -v node >/dev/null || have_llama=0
have_torch=1
/usr/bin/python3 -c 'import torch' 2>/dev/null || have_torch=0
# the peer script must sit beside node_modules to find node-llama-cpp
[ $have_llama = 1 ] && cp "$ROOT/bench/llama-decode.mjs" "$NPM/.bench-llama-decode.mjs" &&
    trap 'rm -rf "$W" "$NPM/.bench-llama-decode.mjs"' EXIT
llama() { node "$NPM/.bench-llama-decode.mjs" "$@"; }
ours() { "$BD" run "$@" | cut -d' ' -f1-3,5; }
torch() { /usr/bin/python3 "$ROOT/bench/torch_decode.py" "$@"; }
# med FILE: the median run (by CPU time) of the "tokens seconds tokens/s cpu" lines in FILE
med() { sort -g -k4 "$1" | sed -n "$(( ($(wc -l <"$1") + 1) / 2 ))p"; }
# measure TAG COMMAND...: appends one run's line to $W/TAG
measure() { tag=$1; shift; "$@" >>"$W/$tag"; }

"$O/tests/tok" corpus 3 3000 | "$O/tests/tok" train llama3 2000 >"$W/tok.json"
cat >"$W/m15.json" <<'CFG'
{"hidden_size": 288, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 6,
 "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "vocab_size": 32000}
CFG
cat >"$W/m110.json" <<'CFG'
{"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
 "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "vocab_size": 32000}
CFG
"$BD" init "$W/m15.json" "$W/tok.json" "$W/m15"
"$BD" init "$W/m110.json" "$W/tok.json" "$W/m110"
gbs=$("$BD" bandwidth)
case " $PARTS " in *" decode "*) ;; *) m15=skip ;; esac

[ "${m15:-}" = skip ] || {
echo "### local: decode ($(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $(getconf _NPROCESSORS_ONLN) CPUs," \
     "ISA $(grep -o -w -E 'avx2|fma|avx512f|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')," \
     "kernel $("$BD" run "$W/m15" --new 2 | cut -d' ' -f4), OMP_NUM_THREADS=$OMP_NUM_THREADS," \
     "load before $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "Read bandwidth measured here: $gbs GB/s per thread ($OMP_NUM_THREADS thread(s) summing 1 GiB, by CPU time)."
echo
echo "| model | engine | batch | tokens/s (wall) | CPU ms / token | vs llama.cpp (CPU) | bandwidth limit tok/s | % of limit (CPU rate) |"
echo "|---|---|---|---|---|---|---|---|"
# row NAME ENGINE BATCH BYTES "tokens seconds tokens/s cpu": one table row; sets last_cpu
row() {
    name=$1 eng=$2 batch=$3 bytes=$4; shift 4
    tokens=$1 secs=$2 tps=$3 cpu=$4
    cpums=$(awk "BEGIN { printf \"%.3f\", 1000 * $cpu / $tokens }")
    vs=-
    [ -n "${peer_cpu:-}" ] && vs=$(awk "BEGIN { printf \"%.2f\", $peer_cpu / $cpums }")
    lim=$(awk "BEGIN { printf \"%.0f\", $gbs * 1e9 / $bytes }")
    pct=$(awk "BEGIN { printf \"%.0f%%\", 100 * (1000 / $cpums) / ($gbs * 1e9 / $bytes) }")
    [ "$batch" = 1 ] || { lim=-; pct=-; }
    echo "| $name | $eng | $batch | $tps | $cpums | $vs | $lim | $pct |"
    last_cpu=$cpums
}
for m in m15 m110; do
    f32=$(stat -c %s "$W/$m/model-f32.gguf") bf16=$(stat -c %s "$W/$m/model-bf16.gguf")
    f16=$(stat -c %s "$W/$m/model-f16.gguf")
    n=$NEW; [ $m = m110 ] && n=$((NEW / 2))
    k=$((n / 4))
    rm -f "$W"/r.*
    for rep in $(seq "$REPS"); do
        for dt in f32 bf16; do
            flag=; [ $dt = bf16 ] && flag=--bf16
            [ $have_llama = 1 ] && measure "r.llama.$dt" llama "$W/$m/model-$dt.gguf" "$OMP_NUM_THREADS" 1 "$n"
            measure "r.ours.$dt" ours "$W/$m" $flag --new "$n"
        done
        [ $have_llama = 1 ] && measure r.llama.f16 llama "$W/$m/model-f16.gguf" "$OMP_NUM_THREADS" 1 "$n"
        [ $have_torch = 1 ] && [ "$rep" = 1 ] && measure r.torch torch "$W/$m" "$OMP_NUM_THREADS" "$n"
        for batch in 32 128; do
            [ $have_llama = 1 ] && measure "r.llama.b$batch" llama "$W/$m/model-f32.gguf" "$OMP_NUM_THREADS" "$batch" "$k"
            measure "r.ours.b$batch" ours "$W/$m" --batch "$batch" --new "$k"
        done
    done
    for dt in f32 bf16; do
        bytes=$f32; [ $dt = bf16 ] && bytes=$bf16
        peer_cpu=
        if [ $have_llama = 1 ]; then
            row "$m $dt" "llama.cpp" 1 "$bytes" $(med "$W/r.llama.$dt")
            peer_cpu=$last_cpu
        fi
        row "$m $dt" "cl local:" 1 "$bytes" $(med "$W/r.ours.$dt")
        [ $dt = f32 ] && [ $have_torch = 1 ] &&
            row "$m $dt" "PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') mv loop" 1 "$bytes" \
                $(med "$W/r.torch")
    done
    # llama.cpp on the F16 export; "vs" is our bf16 row's CPU time against it (both two bytes a weight)
    if [ $have_llama = 1 ]; then
        ours_bf16=$last_cpu peer_cpu=
        row "$m f16" "llama.cpp" 1 "$f16" $(med "$W/r.llama.f16")
        echo "| $m f16 | cl local: +bf16 (no f16 kernel) | 1 | - | $ours_bf16 | $(awk "BEGIN { printf \"%.2f\", $last_cpu / $ours_bf16 }") | - | - |"
    fi
    for batch in 32 128; do
        peer_cpu=
        if [ $have_llama = 1 ]; then
            row "$m f32" "llama.cpp" "$batch" "$f32" $(med "$W/r.llama.b$batch")
            peer_cpu=$last_cpu
        fi
        row "$m f32" "cl local:" "$batch" "$f32" $(med "$W/r.ours.b$batch")
    done
done
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
}
case " $PARTS " in *" ceiling "*)
# How far batching can go here: one decode step's products (every layer's weights, as a step
# reads them) at OpenBLAS's speed or our kernel's, whichever is faster, with attention, norms and
# sampling free, against batch 1 measured in the same run (median wall tokens/s of REPS runs: at
# two threads on an idle machine the wall rate is the one the goal names).
rate() { sort -g -k3 "$1" | sed -n "$(( ($(wc -l <"$1") + 1) / 2 ))p" | cut -d' ' -f3; }
echo
echo "### local: the ceiling of batching ($(date -u +%Y-%m-%d), OMP_NUM_THREADS=$OMP_NUM_THREADS," \
     "load before $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| model | batch | MFLOP / token (products) | OpenBLAS ms / step | ours ms / step | ceiling tokens/s | batch 1 tokens/s | ceiling / batch 1 | batch B tokens/s | measured / batch 1 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for m in m15 m110; do
    n=$NEW; [ $m = m110 ] && n=$((NEW / 2))
    rm -f "$W"/c.*
    for rep in $(seq "$REPS"); do
        measure c.one ours "$W/$m" --new "$n"
        for batch in 32 128; do measure "c.b$batch" ours "$W/$m" --batch "$batch" --new $((n / 4)); done
    done
    one=$(rate "$W/c.one")
    for batch in 32 128; do
        set -- $("$BD" ceiling "$W/$m" --batch "$batch")
        [ "$2" = openblas ] || { echo "SKIP: the ceiling needs the OpenBLAS backend (this build: $2)"; break 2; }
        got=$(rate "$W/c.b$batch")
        awk -v m=$m -v b="$batch" -v f="$1" -v g="$3" -v o="$4" -v one="$one" -v got="$got" 'BEGIN {
            best = g < o ? g : o; c = b / best
            printf "| %s f32 | %d | %.1f | %.2f | %.2f | %.0f | %.0f | %.2f | %.0f | %.2f |\n",
                   m, b, f / 1e6, 1000 * g, 1000 * o, c, one, c / one, got, got / one }'
    done
done
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
;; esac
case " $PARTS " in *" rollout "*) ;; *) exit 0 ;; esac
# rollout MODE K N FLAGS...: cl-rollout MODE over N seeds with K calls in flight; appends
# "completion_tokens wall_s prompt_tokens cpu_s" to $W/ro.MODE.K
rollout() {
    mode=$1 k=$2 n=$3; shift 3
    jq -cn --argjson n "$n" 'range($n) | {id: "s\(.)", task: "document", task_desc: "w", prompt: "goal-\(.): write"}' >"$W/seeds"
    /usr/bin/time -f "%U %S" -o "$W/time" "${BIN:-$ROOT/bin}/cl-rollout" "$mode" -q -Z --no-cache --stats "$W/st" \
        --assistant "local:$W/m15" --user "local:$W/m15" --user-style userlm --assistant-max-tokens 32 \
        --user-max-tokens 16 --max-inflight "$k" "$@" "$W/seeds" >/dev/null
    set -- $(jq -r '.llm | "\(.completion_tokens) \(.wall_s) \(.prompt_tokens)"' "$W/st") $(cat "$W/time")
    echo "$1 $2 $3 $(awk "BEGIN { print $4 + $5 }")" >>"$W/ro$mode.$k"
}
# table MODE: one row per width, medians over the rounds; "vs 1 in flight" is the median of
# each round's ratio to that round's run with one call in flight (the host's memory bandwidth,
# which sets the one-at-a-time rate, moves from minute to minute: a ratio within a round
# compares runs a few seconds apart)
table() {
    for k in 1 32 128; do
        paste "$W/ro$1.1" "$W/ro$1.$k" | awk -v k=$k '
            { tok[NR] = $5; wall[NR] = $6; prompt = $7; cpu[NR] = $8
              r[NR] = ($5 / $6) / ($1 / $2); rc[NR] = ($4 / $1) / ($8 / $5); rs[NR] = sprintf("%.2f", r[NR]) }
            function med(a, n,   i, j, t, b) { for (i = 1; i <= n; i++) b[i] = a[i]
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
                return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
            END { for (i = 1; i <= NR; i++) { rate[i] = tok[i] / wall[i]; cpt[i] = 1000 * cpu[i] / tok[i]; all = all (i > 1 ? ", " : "") rs[i] }
                  printf "| %d | %d | %d | %.1f | %.3f | %.2f | %.2f | %s |\n", k, prompt, tok[1], med(rate, NR), med(cpt, NR),
                         med(r, NR), med(rc, NR), all }'
    done
}
echo
echo "### local: inside cl-rollout ($(date -u +%Y-%m-%d), 15M model, assistant and user local:, 32+16 tokens per reply;" \
     "OMP_NUM_THREADS=$OMP_NUM_THREADS, $REPS rounds, load before $(cut -d' ' -f1-3 /proc/loadavg))"
for rep in $(seq "$REPS"); do
    for k in 1 32 128; do
        n=$k; [ $k = 1 ] && n=8
        rollout --full $k $n --max-turns 2
        # --branch: 2 candidates x 3 futures of 2 turns per state, vanilla candidates (the
        # proactive prompt alone outgrows the 15M model's 2048 positions with this small tokenizer)
        n=$k; [ $k = 1 ] && n=4; [ $k = 128 ] && n=64
        rollout --branch $k $n --proact-ratio 0 --assistant-mode vanilla
    done
done
for mode in --full --branch; do
    echo
    case $mode in
    --full) echo "\`cl-rollout --full\`, 2 turns (seeds: 8 one at a time, else as many as calls in flight)" ;;
    *) echo "\`cl-rollout --branch\`, K 2, S 3, window 2, vanilla candidates (states: 4 one at a time, 32, 64)" ;;
    esac
    echo
    echo "| calls in flight | prompt tokens | completion tokens | completion tokens/s (wall) | CPU ms / completion token | vs 1 in flight (wall) | vs 1 in flight (CPU) | wall ratio, each round |"
    echo "|---|---|---|---|---|---|---|---|"
    table $mode
done
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
[ $have_llama = 1 ] || echo "SKIP: llama.cpp peer (make oracles installs node-llama-cpp)"
[ $have_torch = 1 ] || echo "SKIP: PyTorch peer (python3-torch not installed)"
