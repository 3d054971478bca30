#!/bin/sh
# cl-rollout --branch against the loopback mock at a fixed latency per call: wall time against
# the ideal schedule and CPU per call; the peer is the same client sending the same number of
# independent calls (llmcall), which shows what the HTTP loop alone reaches on this machine.
# Env: BIN (cl programs), O (build dir with tests/mockllm, tests/llmcall), SEEDS (1000),
# LATENCY_MS (50), INFLIGHT (256).
set -eu
sh "$(dirname "$0")/cpu.sh"; echo
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
O=${O:-$here/../build}
SEEDS=${SEEDS:-1000}
LAT=${LATENCY_MS:-50}
INFL=${INFLIGHT:-256}
T=$O/tests
make -C "$here/.." -s "$T/mockllm" "$T/llmcall" O="$O" >/dev/null
dir=$(mktemp -d)
trap 'kill $mock 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"

# A user who never ends the chat and a proactive assistant that answers JSON: every tree has
# its full size, 1 opening + K + 2wKS calls.
jq -cn '{match: "about to start a chat", reply: "{\"response\": \"help me write a poem\"}"},
        {match: "role-playing a person", reply: "{\"thought\": \"t\", \"response\": \"and shorter\"}"},
        {match: "works with people on writing", reply: "{\"response\": \"Which kind of poem?\"}"}' >script
jq -cn --argjson n "$SEEDS" 'range(1; $n + 1) | {id: "s\(.)", task_desc: "creative writing",
        prompt: "goal-\(.): write a short poem about the sea"}' >seeds
"$T/mockllm" --latency "$LAT" --script script --stats mock.stats >port & mock=$!
while ! test -s port; do sleep 0.05; done
url=http://127.0.0.1:$(cat port)/v1

measure() { # label command... -> "label wall user sys"
    label=$1; shift
    /usr/bin/time -f "$label %e %U %S" -o t.$label "$@" >/dev/null
    cat t.$label
}
K=2 S=3 W=2
calls_per_seed=$((1 + K + 2 * W * K * S))
total=$((SEEDS * calls_per_seed))
jq -cn --argjson n "$total" 'range(1; $n + 1) | {id: "r\(.)", messages: [{role: "user", content: "q\(.)"}]}' >flat
{
    measure peer "$T/llmcall" -q -Z --no-cache --assistant openai:m --api-base "$url" --max-inflight "$INFL" flat
    measure rollout "$BIN/cl-rollout" --branch -q -Z --no-cache --assistant openai:asst --user openai:usr \
        --api-base "$url" --max-inflight "$INFL" -k $K --samples $S --window $W --stats st seeds
} >res
made=$(jq .llm.calls st)
awk -v calls="$made" -v lat="$LAT" -v infl="$INFL" -v depth=$((2 + 2 * W)) -v seeds="$SEEDS" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" -v cpus="$(nproc)" '
    { wall[$1] = $2; cpu[$1] = $3 + $4 }
    END {
        work = calls * lat / 1000 / infl; path = depth * lat / 1000
        ideal = work > path ? work : path
        printf "### cl-rollout --branch (%d seeds, K=2 S=3 w=2, %d calls, %d ms per call, %d in flight; %d CPUs, load %s)\n\n", seeds, calls, lat, infl, cpus, load
        printf "| run | wall s | ideal s | of ideal | CPU s | CPU per call |\n|---|---|---|---|---|---|\n"
        printf "| peer: llmcall, %d independent calls | %.2f | %.2f | %.0f%% | %.2f | %.0f us |\n", calls, wall["peer"], work, 100 * work / wall["peer"], cpu["peer"], 1e6 * cpu["peer"] / calls
        printf "| cl-rollout --branch | %.2f | %.2f | %.0f%% | %.2f | %.0f us |\n", wall["rollout"], ideal, 100 * ideal / wall["rollout"], cpu["rollout"], 1e6 * cpu["rollout"] / calls
        printf "\nIdeal = max(calls x latency / in-flight limit, %d sequential calls x latency per tree).\n", depth
    }' res
kill $mock && wait $mock 2>/dev/null || true
echo
echo "Mock server (both runs): $(jq -c . mock.stats)"
