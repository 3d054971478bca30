#!/bin/sh
# Every example in man/cl-seed.1 runs on the shipped examples, prints output and reports no
# bad row (informational counts on stderr are fine).
. "$(dirname "$0")/lib.sh"
MAN="$ROOT/man/cl-seed.1"

# The literal blocks of the EXAMPLES section, one file each, roff escapes undone; /tmp/ in the
# page becomes the test's scratch directory.
split_examples() {
    awk -v dir="$1" '
        /^\.Sh EXAMPLES/ { on = 1; next }
        /^\.Sh / { on = 0 }
        on && /^\.Bd -literal/ { n++; f = dir "/ex" n ".sh"; inblk = 1; next }
        on && /^\.Ed/ { inblk = 0; next }
        on && inblk { gsub(/\\e/, "\\"); gsub(/\/tmp\//, dir "/"); print > f }
    ' "$MAN"
}

test_expect 'the man page has one example per preset and one with --map' '
    split_examples "$PWD" && test "$(ls ex*.sh | wc -l)" = 7 &&
    for p in math bigcodebench medium abgcoqa world; do grep -q -- "--preset $p" ex*.sh || exit 1; done &&
    grep -q "examples/generic.jsonl" ex*.sh && grep -q -- "--map" ex*.sh
'
test_expect 'every man page example runs and prints output without errors' '
    split_examples "$PWD" && ln -s "$ROOT/examples" examples &&
    for f in ex*.sh; do
        sh "$f" >"$f.out" 2>"$f.err" || { echo "$f failed"; cat "$f.err"; exit 1; }
        test -s "$f.out" || { echo "$f printed nothing"; cat "$f" "$f.err"; exit 1; }
        if grep -Eq ":[0-9]+: |rror|Try " "$f.err"; then echo "$f complained:"; cat "$f.err"; exit 1; fi
    done &&
    test "$(wc -l <ex1.sh.out)" = 3 && test "$(wc -l <ex3.sh.out)" -ge 5 &&
    grep -q "My question:" ex4.sh.out && test "$(jq -r .split ex5.sh.out | sort -u)" = test
'
test_done
