#!/bin/sh
# LLM cache: replay, sample keys, corruption, sharing between processes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"

call() { llmcall -q -Z --assistant openai:m --api-base "$MOCK_URL" "$@"; }

test_expect 'a re-run replays every call from the cache, byte for byte, without asking the server' '
    mock_start && ask_n 40 >in && call --cache c --chain 2 in >run1 && test "$(mock_count)" = 80 &&
    call --cache c --chain 2 --stats st in >run2 && test "$(mock_count)" = 80 && cmp run1 run2 &&
    jq -e ".llm.cache_hits == 80 and .llm.attempts == 0" st
'
test_expect 'the same prompt under S sample keys is S calls with S different replies' '
    mock_start && for k in 0 1 2; do jq -cn --arg k "s$k" "{id: \"x\", key: \$k, messages: [{role:\"user\",content:\"same\"}]}"; done >in &&
    call --cache c in >out && test "$(mock_count)" = 3 && test "$(jq -r .reply out | sort -u | wc -l)" = 3 &&
    call --cache c in >out2 && test "$(mock_count)" = 3 && cmp out out2
'
test_expect 'a changed parameter or model misses the cache; a changed key does not' '
    mock_start && ask a "q" >in && OPENAI_API_KEY=k1 call --cache c in >/dev/null &&
    OPENAI_API_KEY=k2 call --cache c in >/dev/null && test "$(mock_count)" = 1 &&
    call --cache c --assistant-temperature 0.5 in >/dev/null && test "$(mock_count)" = 2 &&
    llmcall -q -Z --cache c --assistant openai:other --api-base "$MOCK_URL" in >/dev/null && test "$(mock_count)" = 3
'
test_expect 'a corrupt or torn entry is detected, fetched again and rewritten' '
    mock_start && ask_n 3 >in && call --cache c in >out1 && test "$(mock_count)" = 3 &&
    set -- $(find c -type f | sort) && test $# = 3 &&
    sed -i "s/mock reply/mock replY/" "$1" && head -c 50 "$2" >"$2.cut" && mv "$2.cut" "$2" &&
    call --cache c --stats st in >out2 && test "$(mock_count)" = 5 && jq -e ".llm.cache_corrupt == 2 and .llm.cache_hits == 1" st &&
    ! grep -q "replY" out2 && call --cache c --stats st3 in >out3 && test "$(mock_count)" = 5 && cmp out2 out3 &&
    jq -e ".llm.cache_corrupt == 0" st3
'
test_expect 'cache entries are checksummed files under DIR/llm and no temporary files stay behind' '
    mock_start && ask_n 5 >in && call --cache c in >/dev/null &&
    test "$(find c/llm -type f -name "[0-9a-f]*" | wc -l)" = 5 && test -z "$(find c -name ".tmp*")" &&
    for f in $(find c/llm -type f); do
        head -1 "$f" | grep -Eq "^cl-llm-cache 1 [0-9]+ [0-9a-f]{64}$" || exit 1
        tail -n +2 "$f" | head -c -1 | sha256sum | grep -q "$(head -1 "$f" | cut -d" " -f4)" || exit 1
    done
'
test_expect '--no-cache neither reads nor writes; the default directory is $XDG_CACHE_HOME/cl' '
    mock_start && ask a q >in && XDG_CACHE_HOME=$PWD/xdg call in >/dev/null && test -n "$(find xdg/cl/llm -type f)" &&
    XDG_CACHE_HOME=$PWD/xdg call in >/dev/null && test "$(mock_count)" = 1 &&
    XDG_CACHE_HOME=$PWD/xdg call --no-cache in >/dev/null && test "$(mock_count)" = 2 &&
    HOME=$PWD/home XDG_CACHE_HOME= call --no-cache in >/dev/null && ! test -e home
'
test_expect 'two processes sharing one cache both finish, and every entry left behind replays' '
    mock_start --latency 1-5 && ask_n 200 >in &&
    { call --cache c in >a & pa=$!; call --cache c in >b & pb=$!; wait $pa && wait $pb; } &&
    n=$(mock_count) && test "$n" -ge 200 && call --cache c in >r && test "$(mock_count)" = "$n" &&
    paste -d"\n" a b r | jq -s "[range(0; length; 3) as \$i | .[\$i:\$i+3]] |
        all(.[]; .[2].reply == .[0].reply or .[2].reply == .[1].reply)" | grep -qx true
'
test_expect 'an unusable cache directory is a configuration error (exit 78)' '
    : >file && { llmcall -q --cache file/sub --assistant openai:m --api-base http://127.0.0.1:9/v1 </dev/null 2>err;
    test $? = 78; } && grep -q "cache directory file/sub" err
'
test_done
