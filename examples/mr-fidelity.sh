#!/bin/sh
# examples/mr-fidelity.sh — one MR computation on a shipped example (examples/math.jsonl, row 1:
# 15% of 80) under both prompt sets and both token counters, offline.
#
#   BIN=bin TESTBIN=build/tests sh examples/mr-fidelity.sh
#
# The models are the loopback mock server answering from examples/mr-world.jsonl, a scripted
# world we wrote: the simulated user asks for help with "a percentage question"; under the
# official prompt set the proactive candidate asks which question and offers a choice, under
# ours (cl) it asks tersely; the vanilla candidate explains percentages first; the judges rate
# asking with a choice 1, asking tersely 0.75, answering 0.5, and every conversation reaches the
# right answer.  cl-rollout samples K = 2 candidates (one proactive, one vanilla) with S = 3
# futures of w = 2 turns; cl-reward gives each future the v2 math reward
#   R = accuracy + 0.5 interactivity - 0.5 (assistant tokens of the session) / 1000
# and each candidate MR = mean R, with tokens counted as cl100k_base tokens (the paper's count)
# or whitespace words.  It prints a Markdown table: the scripted replies are the same for every
# run of the same set, so the differences come from the prompts and the counters alone.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
TESTBIN=${TESTBIN:-$ROOT/build/tests}
: "${CL_CL100K:=$ROOT/share/cl/cl100k_base.tiktoken}"
export CL_CL100K
PATH=$BIN:$PATH
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mr-fidelity.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
"$TESTBIN/mockllm" --script "$ROOT/examples/mr-world.jsonl" >"$tmp/port" 2>"$tmp/err" &
pid=$!
i=0
until test -s "$tmp/port"; do
    i=$((i + 1))
    [ $i -le 200 ] || { cat "$tmp/err" >&2; echo "mr-fidelity: the mock server did not start" >&2; exit 69; }
    sleep 0.05
done
URL=http://127.0.0.1:$(cat "$tmp/port")/v1
cl-seed -q -Z --preset math --split all --limit 1 "$ROOT/examples/math.jsonl" >"$tmp/seeds"

echo "| prompt set | token counter | candidate | mean tokens of the session | MR |"
echo "|---|---|---|---:|---:|"
for set in official cl; do
    cl-rollout -q -Z --branch --no-cache --api-base "$URL" --assistant openai:assistant \
        --user openai:user -k 2 --samples 3 --window 2 --prompt-set "$set" "$tmp/seeds" >"$tmp/branch"
    cl-judge -q -Z --no-cache --api-base "$URL" --judge openai:judge --accuracy --interactivity \
        "$tmp/branch" >"$tmp/judged"
    for counter in cl100k words; do
        cl-reward -q -Z --reward v2 --tokens "$counter" "$tmp/judged" |
            jq -r --arg set "$set" --arg counter "$counter" '.candidates[] |
                (if (.content | length) > 48 then .content[0:45] + "..." else .content end) as $c |
                "| \($set) | \($counter) | \(.mode): \($c) | \(.mr.metrics.tokens) | \(.mr.mean * 1000 | round / 1000) |"'
    done
done
