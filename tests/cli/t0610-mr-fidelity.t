#!/bin/sh
# examples/mr-fidelity.sh, whose table BENCHMARKS.md shows: MR of one shipped example under
# both prompt sets and both token counters, against its scripted world.
. "$(dirname "$0")/lib.sh"
test -x "$CL_TESTBIN/mockllm" || skip_all "build/tests/mockllm is not built (make check builds it)"
[ -f "$CL_CL100K" ] || skip_all "cl100k_base.tiktoken missing (make deps installs it)"

test_expect 'the table has each set x counter x candidate, and the numbers BENCHMARKS.md shows' '
    BIN="$CL_BIN" TESTBIN="$CL_TESTBIN" sh "$ROOT/examples/mr-fidelity.sh" >table.md &&
    grep "^| official \|^| cl " table.md >rows && test "$(wc -l <rows)" = 8 &&
    while read -r row; do grep -qxF "$row" "$ROOT/BENCHMARKS.md" || { echo "not in BENCHMARKS.md: $row"; exit 1; }; done <rows
'
test_expect 'words count fewer tokens than cl100k and so give every candidate a higher MR' '
    BIN="$CL_BIN" TESTBIN="$CL_TESTBIN" sh "$ROOT/examples/mr-fidelity.sh" >table.md &&
    awk -F"|" "/^\\| (official|cl) /{ k = \$2 \$4; t[k \$3] = \$5 + 0; m[k \$3] = \$6 + 0 }
        END { n = 0; for (x in t) if (x ~ / cl100k /) { y = x; sub(/ cl100k /, \" words \", y);
              if (!(t[y] < t[x] && m[y] > m[x])) exit 1; n++ } exit n != 4 }" table.md
'
test_done
