#!/bin/sh
# LLM client throughput against the loopback mock (build/tests/mockllm) at 50 ms per call:
# calls/s against the physical limit (in flight / latency), client CPU per call and peak RSS,
# at 64, 256 and 1,024 in flight and with 10% 429s; the mock's own capacity; and, in the same
# run, two peers: the bare libcurl loop the client is built on (tests/helpers/curlfloor.c:
# no JSON, retries or cache — the floor) and a thread pool with the official Python
# implementation's design.
# Env: O (build dir with tests/llmcall and tests/mockllm), N (calls, default 20000),
# LAT (mock latency ms, default 50), PEER_N (peer calls, default 5000).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
O=${O:-$here/../build}
T=$O/tests
N=${N:-20000}
LAT=${LAT:-50}
PEER_N=${PEER_N:-5000}
for p in mockllm llmcall curlfloor; do
    test -x "$T/$p" || { echo "bench-llm: $T/$p missing: run 'make check' (it builds tests/helpers) first" >&2; exit 1; }
done
no_proxy=127.0.0.1 NO_PROXY=127.0.0.1   # loopback must not go through a proxy
export no_proxy NO_PROXY
work=$(mktemp -d)
mp=
cleanup() { [ -n "$mp" ] && kill "$mp" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_mock() { # mock args...
    : >"$work/port"
    "$T/mockllm" --stats "$work/mock.json" "$@" >"$work/port" 2>"$work/mock.err" &
    mp=$!
    while ! test -s "$work/port"; do sleep 0.05; done
    port=$(cat "$work/port")
}
stop_mock() { kill "$mp"; wait "$mp" || true; mp=; }

# client LABEL IN_FLIGHT IDEAL_PER_S [llmcall args...]: one table row
client() {
    label=$1 k=$2 ideal=$3
    shift 3
    case "$*" in *--cache*) cache= ;; *) cache=--no-cache ;; esac
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$T/llmcall" -q --discard --gen "$N" $cache \
        --max-inflight "$k" --assistant openai:bench --api-base "http://127.0.0.1:$port/v1" \
        --stats "$work/st.json" -o /dev/null "$@"
    stop_mock
    read -r wall usr sys rss <"$work/time"
    retries=$(jq .llm.retries "$work/st.json")
    p50=$(jq .llm.latency_p50_s "$work/st.json")
    mock_us=$(jq .us_per_request "$work/mock.json")
    awk -v l="$label" -v k="$k" -v n="$N" -v w="$wall" -v u="$usr" -v s="$sys" -v m="$rss" -v i="$ideal" \
        -v r="$retries" -v p="$p50" -v mu="$mock_us" 'BEGIN {
        printf "| %s | %d | %d | %.2f | %.0f | %s | %.1f | %.0f | %.1f | %d | %.1f |\n", l, k, n, w, n / w,
            (i > 0 ? sprintf("%.0f%%", 100 * n / w / i) : "-"), 1e6 * (u + s) / n, 1e3 * p, m / 1024, r, mu }'
}

lat_s=$(awk -v l="$LAT" 'BEGIN { print l / 1000 }')
ideal() { awk -v k="$1" -v l="$lat_s" 'BEGIN { print k / l }'; }

echo "### LLM client ($N calls, mock latency $LAT ms, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg) at start, $(date +%Y-%m-%d))"
echo
sh "$(dirname "$0")/cpu.sh"
echo
echo "| run | in flight | calls | wall s | calls/s | of ideal | client CPU µs/call | p50 ms | peak RSS MB | retries | mock CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for k in 64 256 1024; do
    start_mock --latency "$LAT"
    client "cl, $LAT ms" "$k" "$(ideal "$k")"
done
start_mock --latency "$LAT" --fault 429=0.1 --retry-after 1 --seed 1
client "cl, $LAT ms, 10% 429 (Retry-After 1 s)" 256 "$(ideal 256)"
start_mock --latency "$LAT"
client "cl, $LAT ms, cache on: every call written" 256 "$(ideal 256)" --cache "$work/cache"
start_mock --latency "$LAT" --port "$port"   # the same endpoint: its URL is part of the key
client "cl, cache on: every call replayed" 256 0 --cache "$work/cache"
start_mock --latency 0
client "cl, mock capacity (0 ms)" 256 0
cap=$(jq '1e6 / .us_per_request | floor' "$work/mock.json" 2>/dev/null || echo "?")

start_mock --latency "$LAT"
/usr/bin/time -f "%e %U %S %M" -o "$work/time" "$T/curlfloor" "http://127.0.0.1:$port/v1/chat/completions" "$N" 256
stop_mock
read -r wall usr sys rss <"$work/time"
awk -v n="$N" -v w="$wall" -v u="$usr" -v s="$sys" -v m="$rss" -v i="$(ideal 256)" -v lat="$LAT" 'BEGIN {
    printf "| floor: bare libcurl multi loop, %s ms | 256 | %d | %.2f | %.0f | %.0f%% | %.1f | - | %.1f | 0 | - |\n",
        lat, n, w, n / w, 100 * n / w / i, 1e6 * (u + s) / n, m / 1024 }'

start_mock --latency "$LAT"
python3 "$here/peer-threadpool.py" "$port" "$PEER_N" 70 >"$work/peer.json"
stop_mock
jq -r --arg lat "$LAT" --argjson ideal "$(ideal 70)" '"| peer: Python pool of 70 threads, \($lat) ms | 70 | \(.calls) | \(.wall_s * 100 | round / 100) | \(.calls / .wall_s | round) | \(.calls / .wall_s / $ideal * 100 | round)% | \(.cpu_s * 1e6 / .calls * 10 | round / 10) | - | \(.max_rss_kb / 1024 | round) | 0 | - |"' "$work/peer.json"
echo
echo "Mock capacity: about $cap requests/s on one core (its CPU per request in the 0 ms run)."
