#!/bin/sh
# The EXAMPLES of cl-pairs(1) run as written, on the hand-built branch records.
. "$(dirname "$0")/lib.sh"

# The command lines of the man page's example blocks, with mdoc escapes undone.
sed -n '/^\.Sh EXAMPLES/,/^\.Sh SEE ALSO/p' "$ROOT/man/cl-pairs.1" |
    sed -n '/^\.Bd -literal/,/^\.Ed/p' | grep -v '^\.' | sed 's/\\-/-/g; s/\\(dq/"/g' >"$_top/examples"

test_expect 'the man page has example commands' 'test "$(wc -l <"$_top/examples")" -ge 5'
test_expect 'every example of cl-pairs(1) runs and writes something' '
    zstd -q -c "$FIXTURES/pairs/branches.jsonl" >scored.jsonl.zst &&
    sh -e "$_top/examples" >printed 2>err &&
    for f in dpo sft next rows published-dpo; do
        test "$(zstd -dc $f.jsonl.zst | wc -l)" -gt 0 || { echo "$f empty"; exit 1; }
    done &&
    test "$(cat printed)" = 3
'
test_done
