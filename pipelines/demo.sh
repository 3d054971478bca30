#!/bin/sh
# pipelines/demo.sh — `make demo`: the whole CollabLLM loop on the shipped examples, offline.
#
# Until the offline world (scripted users and judges, a tiny in-process model) exists, the
# models here are the bundled loopback mock server (build/tests/mockllm) answering from the
# scripted worlds of tests/fixtures/pipelines/: the numbers show the machinery (seeds ->
# simulation -> judges -> rewards -> DPO pairs and SFT dialogues; the benchmark table and its
# chart), not the quality of any model.  Point the same pipelines at a real endpoint with
# API_BASE=... ASSISTANT=openai:MODEL (see collabllm(7)).
#
#   BIN=bin TESTBIN=build/tests OUT=demo-out sh pipelines/demo.sh
set -eu
# From the source tree, or installed (`make install`: PREFIX/share/cl/pipelines/demo.sh, with
# the worlds in PREFIX/share/cl/worlds and the mock server as cl-mockllm).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
TESTBIN=${TESTBIN:-$ROOT/build/tests}
OUT=${OUT:-demo-out}
W=$ROOT/tests/fixtures/pipelines
MOCK=$TESTBIN/mockllm
if [ -d "$ROOT/worlds" ]; then W=$ROOT/worlds; MOCK=$BIN/cl-mockllm; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

pids=
trap 'for p in $pids; do kill "$p" 2>/dev/null || :; done' EXIT INT TERM
# serve NAME SCRIPT: a mock LLM on a free loopback port; sets URL_NAME.
serve() {
    rm -f "$OUT/$1.port"
    "$MOCK" --script "$2" --log "$OUT/$1.requests.jsonl" >"$OUT/$1.port" 2>"$OUT/$1.err" &
    pids="$pids $!"
    i=0
    until test -s "$OUT/$1.port"; do
        i=$((i + 1))
        [ $i -le 200 ] || { cat "$OUT/$1.err" >&2; echo "demo: the mock server did not start" >&2; exit 69; }
        sleep 0.05
    done
    eval "URL_$1=http://127.0.0.1:$(cat "$OUT/$1.port")/v1"
}
serve engine "$W/math-world.jsonl"
serve bench "$W/eval-world.jsonl"

say() { printf '\n== %s\n' "$*" >&2; }
PATH=$BIN:$PATH
export PATH

say "seeds: cl-seed --preset math on examples/math.jsonl"
cl-seed -q --preset math --split all --limit 6 "$ROOT/examples/math.jsonl" -o "$OUT/seeds.jsonl.zst"

say "data engine: make -f pipelines/collab.mk (branch -> judge -> reward -> advance, per turn)"
make -s -f "$ROOT/pipelines/collab.mk" SEEDS="$OUT/seeds.jsonl.zst" OUT="$OUT/collab" BIN="$BIN" \
    API_BASE="$URL_engine" ASSISTANT=openai:demo-assistant USER_MODEL=openai:demo-user \
    JUDGE=openai:demo-judge CACHE="$OUT/cache" SAMPLES=2 MAX_TURNS=4 all
for f in dpo sft; do
    printf '%s: %s records\n' "$f" "$(zstd -dc "$OUT/collab/$f.jsonl.zst" | wc -l)" >&2
done
say "a DPO pair (zstdcat $OUT/collab/dpo.jsonl.zst | jq)"
zstd -dc "$OUT/collab/dpo.jsonl.zst" | head -1 | jq '{id, prompt: [.prompt[].content], chosen: .chosen[0].content, rejected: .rejected[0].content, score_chosen, score_rejected}' >&2

say "benchmark: make -f pipelines/eval.mk (a passive base against the CollabLLM system prompt)"
make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$OUT/seeds.jsonl.zst" OUT="$OUT/eval" BIN="$BIN" \
    API_BASE="$URL_bench" MODELS="base=openai:demo-base collab=openai:demo-collab" MODE_collab=system \
    USER_MODEL=openai:demo-user JUDGE=openai:demo-judge CACHE="$OUT/cache" BOOTSTRAP=1000 all
cat "$OUT/eval/report.txt"
if command -v gnuplot >/dev/null 2>&1; then
    make -s -f "$ROOT/pipelines/eval.mk" SEEDS="$OUT/seeds.jsonl.zst" OUT="$OUT/eval" BIN="$BIN" \
        API_BASE="$URL_bench" MODELS="base=openai:demo-base collab=openai:demo-collab" \
        MODE_collab=system USER_MODEL=openai:demo-user JUDGE=openai:demo-judge \
        CACHE="$OUT/cache" BOOTSTRAP=1000 plot
fi
say "every intermediate file is under $OUT (zstdcat FILE | jq)"
if [ -f "$OUT/eval/report.png" ]; then echo "chart: $OUT/eval/report.png" >&2; fi
