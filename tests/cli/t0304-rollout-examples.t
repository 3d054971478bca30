#!/bin/sh
# The EXAMPLES of cl-rollout(1) run as written, with the mock server standing in for the local
# one on port 8000.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"
command -v mandoc >/dev/null || skip_all "mandoc is not installed (scripts/install-deps installs it)"

# The indented blocks of the EXAMPLES section, one per line of "examples", continuation
# lines joined.
mandoc -T ascii "$ROOT/man/cl-rollout.1" | col -b | sed -n '/^EXAMPLES/,/^[A-Z]/p' |
    awk '/^\t/ { sub(/^\t */, ""); if (sub(/ \\$/, " ")) { buf = buf $0; next } print buf $0; buf = "" }
         /^$/ { if (n) print "--"; n = 0; next } /^\t/ { n = 1 }' >"$_top/examples"

test_expect 'the man page has at least four example commands' '
    test "$(grep -c "^cl-rollout " "$_top/examples")" -ge 4
'
test_expect 'every example command runs against a local server and writes records' '
    { rule "UserLM-8b" "ok, that is all <|endconversation|>"; rule "helping a user with tasks such as writing" "{\"response\": \"Which kind?\"}"; standard_script; } >script &&
    mock_start --script script && seeds 3 >seeds.jsonl && export XDG_CACHE_HOME=$PWD/cache &&
    url=$(printf %s "$MOCK_URL" | sed "s/[\\/&]/\\\\&/g") &&
    sed "s/http:\\/\\/127.0.0.1:8000\\/v1/$url/" "$_top/examples" | grep -v "^--" >run.sh &&
    cat run.sh && sh -e run.sh >log 2>&1 && cat log &&
    for f in conversations proact system branches; do test "$(zstdcat $f.zst | wc -l)" = 3 || exit 1; done &&
    grep -q "terminated" log && test "$(mock_count)" -gt 20
'
test_done
