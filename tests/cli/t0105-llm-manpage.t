#!/bin/sh
# man/cl-llm.7 is the reference for the LLM flags: it must name every one that --help lists.
. "$(dirname "$0")/lib.sh"
MAN="$ROOT/man/cl-llm.7"
test -x "$CL_TESTBIN/llmcall" || skip_all "build/tests/llmcall is not built (make check builds it)"

test_expect 'every client and role flag of --help is documented in cl-llm(7)' '
    "$CL_TESTBIN/llmcall" --help | sed -n "/^LLM client/,/^\$/p" | grep -o -- "--[a-zA-Z-]*" | sort -u >flags &&
    test "$(wc -l <flags)" -ge 20 &&
    sed "s/\\\\-/-/g; s/ Ns //g; s/^\.It Fl //; s/ Fl / /g" "$MAN" >page &&
    while read -r f; do
        g=$(echo "$f" | sed "s/^--ROLE-/--/; s/^--\(assistant\|user\|judge\)\$/--ROLE/")
        case $g in --ROLE) continue ;; esac
        grep -q -- "${g#--}" page || { echo "undocumented: $f"; exit 1; }
    done <flags
'
test_expect 'every environment variable the client reads is documented' '
    for v in OPENAI_API_KEY OPENAI_BASE_URL _API_KEY _BASE_URL XDG_CACHE_HOME; do
        grep -q "$v" "$MAN" || { echo "undocumented: $v"; exit 1; }
    done &&
    for v in OPENAI_API_KEY OPENAI_BASE_URL XDG_CACHE_HOME; do grep -rq "\"$v\"" "$ROOT/lib" || exit 1; done
'
test_expect 'the cache example of the man page runs' '
    awk "/^\.Sh EXAMPLES/ {on=1} on && /^\.Bd -literal/ {n++; blk=1; next} blk && /^\.Ed/ {blk=0} blk && n==1" "$MAN" |
        sed "s|/tmp/|$PWD/|g" >ex.sh && test -s ex.sh && sh ex.sh >out 2>err && grep -q "cl-cache/llm" out && ! test -s err
'
test_done
