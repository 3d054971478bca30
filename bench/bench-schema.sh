#!/bin/sh
# What checking record shapes (lib/collab/schema) costs cl-reward: --metric bleu -j 1 over
# RECORDS (default 20000) copies of tests/fuzz/schema-base.json, a scored branch record of about
# 100 JSON values with short texts (the check's worst case against the scoring work).  The peer
# is the same command from PEER_BIN (a build without the check, e.g. of commit 21a8e6a), run
# alternately, ROUNDS (default 4) times each; user CPU seconds.  Prints a Markdown block.
#   BIN=bin PEER_BIN=/tmp/base/bin sh bench/bench-schema.sh      (make bench B=schema)
set -eu
: "${BIN:=bin}" "${RECORDS:=20000}" "${ROUNDS:=4}"
if [ -z "${PEER_BIN:-}" ]; then
    echo "bench-schema: set PEER_BIN to the programs of a build without the shape check" >&2
    exit 0
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-schema.XXXXXX")
trap 'rm -rf "$T"' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
python3 - "$ROOT/tests/fuzz/schema-base.json" "$RECORDS" >"$T/in.jsonl" <<'PYEOF'
import json, sys
b = json.load(open(sys.argv[1]))
for i in range(int(sys.argv[2])):
    b["id"] = "c%d" % i
    print(json.dumps(b))
PYEOF
cpu() { /usr/bin/time -f %U "$1/cl-reward" -q -Z --metric bleu -j 1 "$T/in.jsonl" 2>&1 >/dev/null | tail -1; }
peer= mine=
for _ in $(seq "$ROUNDS"); do
    peer="$peer $(cpu "$PEER_BIN")"
    mine="$mine $(cpu "$BIN")"
done
echo "| build | user s | best |"
echo "|---|---|---|"
for row in "peer ($PEER_BIN):$peer" "this build ($BIN):$mine"; do
    vals=${row#*:}
    echo "| ${row%%:*} |$vals | $(echo $vals | tr ' ' '\n' | sort -n | head -1) |"
done
