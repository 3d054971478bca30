#!/bin/sh
# The EXAMPLES of cl-reward(1), run on the fixtures (file names swapped for fixture paths).
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"

test_expect 'the man page examples are still in the page' '
    for s in "--metric bleu --reward paper" "--metric bleu,tokens --tokens words" \
             "--metric pass_rate -j 8 --timeout 20 --stats st.json" "--metric math full.jsonl.zst"; do
        grep -qF -- "$s" "$ROOT/man/cl-reward.1" || { echo "missing: $s"; exit 1; }
    done
'
test_expect 'paper reward of a judged document branch' '
    cl-reward --metric bleu --reward paper "$F/branch-document.jsonl" >scored.jsonl.zst 2>err &&
    zstd -dc scored.jsonl.zst | jq -e ".candidates[0].mr.n == 2"
'
test_expect 'a custom R* from word counts' '
    cl-reward -q --metric bleu,tokens --tokens words \
      --weights "bleu=1,interactivity=1,tokens=-5e-4" "$F/branch-document.jsonl" | zstd -dc |
      jq -e ".candidates[0].futures[0].R > 1.98"
'
if [ -x /usr/bin/python3 ]; then
test_expect 'pass rates with a stats file' '
    cl-reward -q --metric pass_rate -j 8 --timeout 20 --cpu 1 --stats st.json \
      "$F/branch-code.jsonl" >scored.jsonl.zst && jq -e ".sandbox.pass == 1" st.json
'
else
    echo "SKIP: $(basename "$0"): pass rates need /usr/bin/python3 (scripts/install-deps installs it)" >&2
fi
test_expect 'accuracy judge against the MATH rules' '
    cp "$F/full-math.jsonl" full.jsonl.zst &&
    cl-reward -q -Z --metric math full.jsonl.zst >scored &&
    test "$(wc -l <scored)" = 3 &&
    jq -c "select(.scores.accuracy != .scores.math_equiv) | .id" scored >diff &&
    test "$(cat diff)" = ""
'
test_done
