#!/bin/sh
# Every program: --help, --version, usage errors, and a man page that lints clean.
. "$(dirname "$0")/lib.sh"

for p in cl-seed cl-rollout cl-judge cl-reward cl-pairs cl-finetune; do
    test_expect "$p --help prints its usage on stdout and exits 0" "
        $p --help >out 2>err && grep -q '^Usage: $p' out && ! test -s err
    "
    test_expect "$p --version names the program and the version" "
        $p --version >out && grep -Eq '^$p \\(cl\\) [0-9]+\\.[0-9]+\\.[0-9]+\$' out
    "
    test_expect "$p rejects an unknown option with exit 2 and a hint" "
        { $p --no-such-option </dev/null >out 2>err; test \$? = 2; } && grep -q \"Try '$p --help'\" err
    "
    test_expect "$p has a man page that lints clean" "
        test -f '$ROOT/man/$p.1' && mandoc -T lint -W warning '$ROOT/man/$p.1'
    "
    test_expect "every long option in $p --help appears in its man page or collabllm(7)" "
        $p --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u >opts &&
        cat '$ROOT/man/$p.1' '$ROOT/man/collabllm.7' | sed 's/\\\\-/-/g; s/Fl /--/g' >pages &&
        while read -r o; do grep -qE -- \"\$o([^a-z0-9-]|\\\$)\" pages || { echo \"missing \$o\"; exit 1; }; done <opts
    "
    test_expect "$p --help names every exit status of collabllm(7)" "
        sed -n '/^\\.Sh EXIT STATUS/,/^\\.Sh /s/^\\.It \\([0-9][0-9]*\\)\$/\\1/p' '$ROOT/man/collabllm.7' >codes &&
        test \$(wc -l <codes) -ge 10 && $p --help >out &&
        while read -r n; do grep -Eq \"(^|[ /])\$n( |/)\" out || { echo \"missing \$n\"; exit 1; }; done <codes
    "
done
test_done
