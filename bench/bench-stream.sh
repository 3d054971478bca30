#!/bin/sh
# Record-stream throughput: cl-pairs pass-through (and --map .) against `zstdcat | jq -c . | zstd`
# and `zstdcat | zstd` on the same ~1 GB of conversation records, in one run.
# Env: BIN (cl programs), MB (size, default 1000), BENCH_DIR (cache for the data).
set -eu
sh "$(dirname "$0")/cpu.sh"; echo
here=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$here/../bin}
MB=${MB:-1000}
dir=${BENCH_DIR:-$here/out}
mkdir -p "$dir"
data=$dir/conversations-$MB.jsonl.zst
if [ ! -s "$data" ]; then
    echo "generating $MB MB of records..." >&2
    python3 "$here/gen-conversations.py" "$MB" | zstd -q -3 -o "$data.tmp" && mv "$data.tmp" "$data"
fi
raw=$(zstd -lv "$data" 2>/dev/null | awk '/Decompressed Size/ {gsub(/[(),]/,""); for (i=1;i<=NF;i++) if ($i=="B") print $(i-1)}' | tail -1)
[ -n "$raw" ] || raw=$(zstd -dc "$data" | wc -c)
recs=$(zstd -dc "$data" | wc -l)

run() { # label command...
    label=$1; shift
    t0=$(date +%s.%N)
    sh -c "$*" >/dev/null
    t1=$(date +%s.%N)
    echo "$label $(echo "$t1 - $t0" | bc -l)"
}
res=$(mktemp)
{
    run peer_jq "zstd -dc '$data' | jq -c . | zstd -q -3 > /dev/null"
    run peer_zstd "zstd -dc '$data' | zstd -q -3 > /dev/null"
    run cl_pass "'$BIN/cl-pairs' -q '$data' > /dev/null"
    run cl_map "'$BIN/cl-pairs' -q --map . '$data' > /dev/null"
} >"$res"
awk -v raw="$raw" -v recs="$recs" -v mb="$MB" '
    { t[$1] = $2 }
    END {
        printf "### Record streams (%d records, %.0f MB uncompressed, %s)\n\n", recs, raw/1e6, strftime("%Y-%m-%d")
        printf "| pipeline | seconds | records/s | MB/s | vs jq pipeline | vs zstdcat\\|zstd |\n|---|---|---|---|---|---|\n"
        split("peer_jq peer_zstd cl_pass cl_map", order, " ")
        name["peer_jq"] = "`zstdcat \\| jq -c . \\| zstd`"; name["peer_zstd"] = "`zstdcat \\| zstd`"
        name["cl_pass"] = "`cl-pairs` (pass-through)"; name["cl_map"] = "`cl-pairs --map .`"
        for (i = 1; i <= 4; i++) { k = order[i]
            printf "| %s | %.2f | %.0f | %.1f | %.2fx | %.2fx |\n", name[k], t[k], recs/t[k], raw/t[k]/1e6,
                t["peer_jq"]/t[k], t["peer_zstd"]/t[k] }
    }' "$res"
rm -f "$res"
