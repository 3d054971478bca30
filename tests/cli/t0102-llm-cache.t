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
test_expect 'a corrupt entry and a torn tail are detected, fetched again, and the new entries win' '
    mock_start && ask_n 3 >in && call --cache c in >out1 && test "$(mock_count)" = 3 &&
    set -- c/llm/pack-*.clc && test $# = 1 &&
    sed -i "2s/mock reply/mock replY/" "$1" && head -c $(( $(wc -c <"$1") - 20 )) "$1" >cut && mv cut "$1" &&
    call --cache c --stats st in >out2 && test "$(mock_count)" = 5 &&
    jq -e ".llm.cache_corrupt == 2 and .llm.cache_hits == 1" st && ! grep -q "replY" out2 &&
    call --cache c --stats st3 in >out3 && test "$(mock_count)" = 5 && cmp out2 out3 &&
    jq -e ".llm.cache_hits == 3" st3
'
test_expect 'each process appends to a pack of its own, every entry checksummed, and leaves its index' '
    mock_start && ask_n 5 >in && call --cache c in >/dev/null && call --cache c --assistant-temperature 0.5 in >/dev/null &&
    test "$(ls c/llm | grep -Ecx "pack-[0-9a-f]{16}-[0-9]+\.clc")" = 2 &&
    test "$(ls c/llm | grep -Ecx "pack-[0-9a-f]{16}-[0-9]+\.clx")" = 2 && test "$(ls c/llm | wc -l)" = 4 &&
    python3 - c/llm/pack-*.clc <<"PY"
import hashlib, json, sys
n = 0
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        magic, ver, key, plen, sha = data[pos:nl].split(b" ")
        plen = int(plen)
        payload = data[nl + 1:nl + 1 + plen]
        assert magic == b"cl-llm-cache" and ver == b"2" and len(key) == 64
        assert hashlib.sha256(payload).hexdigest().encode() == sha
        assert data[nl + 1 + plen:nl + 2 + plen] == b"\n"
        assert json.loads(payload)["response"]["choices"]
        pos = nl + 2 + plen
        n += 1
assert n == 10, n
PY
'
test_expect 'a damaged or stale pack index is ignored and the pack read again' '
    mock_start && ask_n 4 >in && call --cache c in >out1 && set -- c/llm/pack-*.clx && test $# = 1 &&
    printf "\377\377\377\377" | dd of="$1" bs=1 seek=40 conv=notrunc 2>/dev/null &&
    call --cache c in >out2 && test "$(mock_count)" = 4 && cmp out1 out2 &&
    printf "junk" >>"${1%.clx}.clc" && call --cache c --stats st in >out3 && test "$(mock_count)" = 4 &&
    cmp out1 out3 && jq -e ".llm.cache_corrupt == 1" st
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
