#!/bin/sh
# Record streams: framing, errors, filters, shards, pipes.
. "$(dirname "$0")/lib.sh"

# until_decodes FILE N: waits (at most 20 s) until FILE is a complete zstd stream of N lines,
# while the writer still holds its input open.
until_decodes() {
    _i=0
    until [ "$(zstd -dc "$1" 2>/dev/null | wc -l)" = "$2" ] && zstd -tq "$1" 2>/dev/null; do
        _i=$((_i + 1)); [ $_i -le 400 ] || return 1; sleep 0.05
    done
}

test_expect 'plain JSONL passes through byte for byte, big integers included' '
    printf "{\"id\":\"a\",\"n\":12345678901234567890}\n{\"id\":\"b\"}\n" >in &&
    cl-pairs -q -Z in >out && cmp in out
'
test_expect 'output is zstd when not a terminal, and reads back' '
    printf "{\"a\":1}\n" >in && cl-pairs -q in >out.zst &&
    head -c4 out.zst | od -An -tx1 | grep -q "28 b5 2f fd" && zstd -dc out.zst | cmp - in
'
test_expect 'concatenated zstd frames are one stream' '
    printf "{\"a\":1}\n" | zstd -q >a.zst && printf "{\"a\":2}\n" | zstd -q >b.zst &&
    cat a.zst b.zst | cl-pairs -q -Z >out && test "$(wc -l <out)" = 2
'
test_expect 'a zstd file larger than the read buffer decodes (file and pipe)' '
    seq 1 300000 | awk "{printf \"{\\\"n\\\":%d,\\\"r\\\":%d}\\n\", \$1, (\$1*7919)%100003}" >in &&
    zstd -q -1 in -o in.zst && test $(wc -c <in.zst) -gt 300000 &&
    cl-pairs -q -Z in.zst | cmp - in && cat in.zst | cl-pairs -q -Z | cmp - in
'
test_expect 'a truncated zstd frame exits 65 and says truncated' '
    seq 1 20000 | sed "s/.*/{\"n\":&}/" | zstd -q >full.zst &&
    head -c $(( $(wc -c <full.zst) - 7 )) full.zst >cut.zst &&
    { cl-pairs -q -Z cut.zst >out 2>err; test $? = 65; } && grep -q truncated err
'
test_expect 'bad JSON on line 2 exits 65 and names file, line and byte' '
    printf "{\"a\":1}\n{\"a\":tru}\n" >in &&
    { cl-pairs -q -Z in >out 2>err; test $? = 65; } && grep -q "in:2: byte 6" err
'
test_expect 'invalid UTF-8 is named as such' '
    printf "{\"a\":\"x\377\"}\n" >in &&
    { cl-pairs -q -Z in 2>err; test $? = 65; } && grep -q "invalid UTF-8" err
'
test_expect 'a record that is not an object is an error' '
    printf "[1]\n" >in && { cl-pairs -q -Z in 2>err; test $? = 65; } && grep -q "not a JSON object" err
'
test_expect '--skip-bad counts bad lines, keeps good ones and copies rejects' '
    printf "{\"a\":1}\nnope\n{\"a\":2}\n" >in && cl-pairs -Z --skip-bad --rejects rej in >out 2>err &&
    test "$(wc -l <out)" = 2 && grep -qx nope rej && grep -q "1 malformed skipped" err
'
test_expect '--where and --map apply jq programs' '
    printf "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n" >in &&
    cl-pairs -q -Z --where ".n >= 2" --map "{m: (.n*10)}" in >out &&
    printf "{\"m\":20}\n{\"m\":30}\n" | cmp - out
'
test_expect 'a jq compile error is a usage error (exit 2)' '
    { echo "{}" | cl-pairs -q -Z --map ".[" 2>err; test $? = 2; } && grep -q "cannot compile" err
'
test_expect 'shards are disjoint and their union is the input' '
    seq 1 1000 | sed "s/.*/{\"id\":\"r&\"}/" >in &&
    for i in 0 1 2; do cl-pairs -q -Z --shard $i/3 in >s$i || exit 1; done &&
    test "$(cat s0 s1 s2 | sort | uniq | wc -l)" = 1000 && test "$(cat s0 s1 s2 | wc -l)" = 1000 &&
    test -s s0 && test -s s1 && test -s s2
'
test_expect 'a bad --shard is a usage error' '
    { echo "{}" | cl-pairs --shard 3/3 2>err; test $? = 2; } && grep -q "Try" err
'
test_expect 'writing to a closed pipe ends quietly' '
    seq 1 200000 | sed "s/.*/{\"n\":&}/" >in &&
    cl-pairs -q -Z in 2>err | head -1 >out && test "$(cat out)" = "{\"n\":1}" && ! test -s err
'
test_expect 'a full disk (/dev/full) exits 74 with a message' '
    echo "{}" >in && { cl-pairs -q -Z -o /dev/full in 2>err; test $? = 74; } && grep -q "No space" err
'
test_expect 'the same input gives the same bytes' '
    seq 1 5000 | sed "s/.*/{\"n\":&,\"s\":\"x&\"}/" >in &&
    cl-pairs -q --map ". + {k: 1}" in >a && cl-pairs -q --map ". + {k: 1}" in >b && cmp a b
'
test_expect 'a 64 MiB line passes through' '
    { printf "{\"big\":\""; head -c 67108864 /dev/zero | tr "\0" a; printf "\"}\n"; } >in &&
    cl-pairs -q in >out.zst && zstd -dc out.zst | cmp - in
'
test_expect 'records are pushed out as complete zstd frames while the input stalls' '
    mkfifo go && { printf "{\"a\":1}\n{\"a\":2}\n"; read x <go; printf "{\"a\":3}\n"; } |
        cl-pairs -q >out.zst & pid=$!
    until_decodes out.zst 2; r=$?; echo >go; wait $pid &&
    test $r = 0 && test "$(zstd -dc out.zst | wc -l)" = 3
'
test_expect 'an empty input gives an empty, valid zstd stream' '
    : >in && cl-pairs -q in >out.zst && test -s out.zst && zstd -dc out.zst | wc -c | grep -qx 0
'
test_expect 'a missing input file exits 66' '
    { cl-pairs -q nosuchfile 2>err; test $? = 66; } && grep -q nosuchfile err
'
test_expect '--stats writes counts as JSON' '
    printf "{\"n\":1}\n{\"n\":2}\n" >in && cl-pairs -q -Z --where ".n==2" --stats st.json in >/dev/null &&
    jq -e ".records_in == 2 and .records_out == 1 and .filtered == 1" st.json
'
test_expect '--where alone keeps the original bytes of the records it keeps' '
    printf "{\"n\":12345678901234567890,\"k\":1}\n{\"k\":2}\n" >in &&
    cl-pairs -q -Z --where ".k == 1" in >out && head -1 in | cmp - out
'
test_expect 'filters give the same bytes on one thread and on several' '
    seq 1 20000 | sed "s/.*/{\"n\":&,\"s\":\"x&\"}/" >in &&
    OMP_NUM_THREADS=1 cl-pairs -q -Z --where ".n % 3 != 0" --map ". + {m: (.n * 2)}, {t: .s}" in >a &&
    OMP_NUM_THREADS=2 cl-pairs -q -Z --where ".n % 3 != 0" --map ". + {m: (.n * 2)}, {t: .s}" in >b &&
    cmp a b && test "$(wc -l <a)" = 26668
'
test_expect 'a jq error deep in a batch names its line, on any thread count' '
    seq 1 5000 | sed "s/.*/{\"n\":&}/; 4321s/.*/{\"n\":\"text\"}/" >in &&
    for t in 1 2; do
        { OMP_NUM_THREADS=$t cl-pairs -q -Z --map "{m: (.n - 1)}" in >out 2>err; test $? = 65; } &&
        grep -q "in:4321" err || exit 1
    done
'
test_expect 'a --map program with no output for a record drops it, on any thread count' '
    seq 1 3000 | sed "s/.*/{\"n\":&}/" >in &&
    for t in 1 2; do
        OMP_NUM_THREADS=$t cl-pairs -q -Z --map "select(.n % 2 == 0) // empty" in >out &&
        test "$(wc -l <out)" = 1500 && head -1 out | grep -qx "{\"n\":2}" || exit 1
    done
'
test_expect '--map outputs that are not objects are reported, and skipped with --skip-bad' '
    printf "{\"n\":1}\n{\"n\":2}\n" >in &&
    OMP_NUM_THREADS=2 cl-pairs -Z --skip-bad --map "if .n == 1 then 5 else . end" in >out 2>err &&
    grep -q "in:1: --map produced a number" err && printf "{\"n\":2}\n" | cmp - out
'
test_expect 'filtered records are pushed out while the input stalls' '
    mkfifo go && { printf "{\"a\":1}\n"; read x <go; printf "{\"a\":2}\n"; } |
        OMP_NUM_THREADS=2 cl-pairs -q --map ". + {b: 1}" >out.zst & pid=$!
    until_decodes out.zst 1; r=$?; echo >go; wait $pid && test $r = 0 &&
    zstd -dc out.zst | head -1 | grep -qx "{\"a\":1,\"b\":1}" && test "$(zstd -dc out.zst | wc -l)" = 2
'
test_expect 'progress (records/s, share done, ETA) goes to a terminal, and -q or a non-terminal stderr silences it' '
    seq 1 300000 | sed "s/.*/{\"n\":&,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}/" >in &&
    script -qec "OMP_NUM_THREADS=1 cl-pairs --map . in >/dev/null" /dev/null >tty.out &&
    tr "\r" "\n" <tty.out | grep -Eq "^cl-pairs: records [0-9]+/~[0-9]+, [0-9.]+/s, ETA [0-9]+m[0-9]{2}s, [0-9.]+ MB/s" &&
    script -qec "cl-pairs -q --map . in >/dev/null" /dev/null >tty.q && ! grep -q ETA tty.q &&
    cl-pairs --map . in >/dev/null 2>err && ! grep -q ETA err && grep -q "records in" err
'
test_done
