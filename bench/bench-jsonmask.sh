#!/bin/sh
# Cost of constrained decoding (response_format on local: models, lib/model/jsonmask.c): first
# the masks alone (tests/helpers/jsonmask-bench: a full mask from scratch, one from the cache,
# one single-token test) over this vocabulary and over cl100k's 100k tokens; then per generated
# token: the same calls to the 15M-shaped model of bench-local.sh (random weights,
# vocabulary 32000, a 2000-piece BPE), without a response_format, with json_object and with a
# json_schema, by process CPU time (the machine is shared; wall time moves with the load), the
# median of REPS runs with the three variants alternating, at 1 and 32 calls in flight.
# Random weights are the hard case: the first draw is often a token the automaton forbids, so
# the full mask is asked for more often than a trained model would make it.
# Env: OMP_NUM_THREADS (1), REPS (3), NEW (64 tokens per reply).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
O=${O:-build}
case $O in
/*) ;;
*) make -s -C "$ROOT" "$O/tests/model-bench-decode" "$O/tests/tok" "$O/tests/llmcall" "$O/tests/jsonmask-bench" \
       >/dev/null && O=$ROOT/$O ;;
esac
: "${OMP_NUM_THREADS:=1}" "${REPS:=3}" "${NEW:=64}"
export OMP_NUM_THREADS
W=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-jsonmask.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$O/tests/tok" corpus 3 3000 | "$O/tests/tok" train llama3 2000 >"$W/tok.json"
cat >"$W/m15.json" <<'CFG'
{"hidden_size": 288, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 6,
 "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "vocab_size": 32000}
CFG
"$O/tests/model-bench-decode" init "$W/m15.json" "$W/tok.json" "$W/m15"
OBJ='{"type":"json_object"}'
SCHEMA='{"type":"json_schema","json_schema":{"name":"reply","schema":{"type":"object","properties":{"current_problem":{"type":"string"},"thought":{"type":"string"},"response":{"type":"string"}},"required":["response"],"additionalProperties":false}}}'
# run VARIANT INFLIGHT RECORDS: appends "tokens cpu_s" to $W/VARIANT.INFLIGHT
run() {
    jq -cn --argjson n "$3" 'range($n) | {id: "r\(.)", messages: [{role: "user", content: "Write item \(.)"}]}' >"$W/in"
    case $1 in none) set -- "$@" ;; object) set -- "$@" --assistant-param "response_format=$OBJ" ;;
               schema) set -- "$@" --assistant-param "response_format=$SCHEMA" ;; esac
    v=$1 k=$2; shift 3
    /usr/bin/time -f "%U %S" -o "$W/time" "$O/tests/llmcall" -q -Z --no-cache --discard --stats "$W/st" \
        --assistant "local:$W/m15" --assistant-temperature 1 --assistant-max-tokens "$NEW" --max-inflight "$k" \
        "$@" "$W/in"
    echo "$(jq -r .llm.completion_tokens "$W/st") $(awk '{ print $1 + $2 }' "$W/time")" >>"$W/$v.$k"
}
# med FILE: CPU ms per token of the median run
med() { awk '{ printf "%.4f\n", 1000 * $2 / $1 }' "$1" | sort -g | sed -n "$(( ($(wc -l <"$1") + 1) / 2 ))p"; }
echo "#### local: constrained decoding cost ($(date -u +%Y-%m-%d), 15M shape, vocabulary 32000, $NEW tokens a reply," \
     "temperature 1, OMP_NUM_THREADS=$OMP_NUM_THREADS, load before $(cut -d' ' -f1-3 /proc/loadavg))"
echo
CL100K=${CL_CL100K:-$ROOT/share/cl/cl100k_base.tiktoken}
echo "| vocabulary | full mask from scratch (ms) | from the cache (us) | single-token test (us) |"
echo "|---|---|---|---|"
# masks LABEL TOKENIZER VOCAB: one row of the masks-alone table
masks() {
    [ -f "$2" ] || { echo "SKIP: $2 is missing (make $2)"; return 0; }
    "$O/tests/jsonmask-bench" "$2" "$3" | awk -v l="$1" '{ print "| " l " | " $4 " | " $6 " | " $8 " |" }'
}
masks "2000-piece BPE in 32000 ids (the 15M model's)" "$W/m15/tokenizer.json" 32000
masks "cl100k (100256 ids)" "$CL100K" 100256
echo
echo "| calls in flight | response_format | completion tokens | CPU ms / token (median of $REPS) | vs none |"
echo "|---|---|---|---|---|"
for k in 1 32; do
    n=$k; [ $k = 1 ] && n=8
    r=0
    while [ $r -lt "$REPS" ]; do
        for v in none object schema; do run $v $k $n; done
        r=$((r + 1))
    done
    base=$(med "$W/none.$k")
    for v in none object schema; do
        m=$(med "$W/$v.$k")
        echo "| $k | $v | $(head -1 "$W/$v.$k" | cut -d' ' -f1) | $m | $(awk "BEGIN { printf \"%.2f\", $m / $base }") |"
    done
done
echo
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
