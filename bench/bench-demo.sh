#!/bin/sh
# make demo's sensitivity to its DPO step count: pipelines/demo.sh once per value of
# DEMO_STEPS (default "15 25 35 50"), the rest of the recipe at its defaults.  Prints, per
# value, the fine-tuned model's gain in task success over the base (the peer, scored in the
# same run on the same 210 held-out tasks) with its 95% bootstrap interval, the per-family
# gains, needless questions, well-formed replies and the loop's wall time.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "#### make demo by DPO steps ($(date -u +%F), OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| DPO steps (\`STEPS\`) | gain [95% CI] | document BLEU gain | code PR gain | math gain | asks when nothing is missing | well-formed | wall s |"
echo "|---|---|---|---|---|---|---|---|"
for s in ${DEMO_STEPS:-15 25 35 50}; do
    t0=$(date +%s)
    STEPS=$s BIN="$BIN" OUT="$TMP/d$s" sh "$ROOT/pipelines/demo.sh" >"$TMP/d$s.log" 2>&1 ||
        { tail -n 20 "$TMP/d$s.log" >&2; exit 1; }
    t1=$(date +%s)
    # the paired differences, in the order demo.sh prints them: all tasks, document, code, math
    gains=$(awk '/^Paired diff collab - base/ { printf "%s %s %s|", $7, $8, $9 }' "$TMP/d$s.log")
    stats=$(sed -n 's/^collab  *{/{/p' "$TMP/d$s.log")
    echo "$gains" | awk -F'|' -v s="$s" -v t="$((t1 - t0))" \
        -v asks="$(echo "$stats" | jq -r .asks_when_nothing_missing)" \
        -v wf="$(echo "$stats" | jq -r '.well_formed * 1000 | round / 10')" \
        '{ split($1, all, " "); printf "| %s | %+.1f %s %s | %s | %s | %s | %s | %s%% | %s |\n",
           s, all[1], all[2], all[3], $2, $3, $4, asks, wf, t }'
done
