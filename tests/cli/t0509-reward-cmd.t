#!/bin/sh
# --metric cmd:PROGRAM: a user's metric as one long-lived process over batched JSONL.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"
command -v python3 >/dev/null || skip_all "python3 is needed for the metric programs"

# A metric in Python: the share of the assistant's words in the scored window, and a count of
# the lines it has read so far (one process for the whole run: the count keeps growing).
cat >"$_top/share.py" <<'PY'
import json, sys
seen = 0
for line in sys.stdin:
    u = json.loads(line)
    seen += 1
    window = u["messages"][u["window"]:]
    words = [len(m["content"].split()) for m in window]
    mine = [len(m["content"].split()) for m in window if m["role"] == "assistant"]
    print(json.dumps({"assistant_share": sum(mine) / max(1, sum(words)), "seen": seen,
                      "has_id": 1 if u["id"] else 0, "doc": len(u["extracted"].get("document", ""))}),
          flush=True)
PY

test_expect 'every unit gets the program'"'"'s scores; one process serves every batch; R* can weigh them' '
    cat "$F/branch-document.jsonl" "$F/branch-document.jsonl" >in &&
    cl-reward -q -Z --batch 1 --metric "cmd:python3 $_top/share.py" --weights "assistant_share=1" in >out &&
    jq -s -e "[.[].candidates[].futures[].scores.seen] == [1, 2, 3, 4, 5, 6]" out &&
    jq -e "[.candidates[].futures[] | .scores.assistant_share > 0 and .scores.assistant_share < 1 and .scores.has_id == 1 and .R == .scores.assistant_share] | all" out &&
    jq -e "[.candidates[].futures[].scores.doc] | all(. > 0)" out
'
test_expect 'the unit holds the seed, the extracted artefacts, the whole conversation and where its window starts' '
    cl-reward -q -Z --metric "tokens,cmd:tee -a units.jsonl | sed -u \"s/.*/{}/\"" "$F/branch-document.jsonl" >out &&
    test "$(wc -l <units.jsonl)" = 3 &&
    jq -s -e "all(.[]; .id == \"doc-1\" and .task == \"document\" and (.unit | test(\"^candidates\\\\[[0-9]\\\\]\\\\.futures\\\\[[0-9]\\\\]$\"))
        and (.messages | length) > .window and .messages[.window].role == \"assistant\" and (.extracted | type) == \"object\")" units.jsonl >/dev/null &&
    jq -e "[.candidates[].futures[].scores.tokens] | length == 3" out
'
test_expect 'a unit it cannot score fails its record with the program'"'"'s words; a non-number fails it too' '
    echo "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"id\":\"x\"}" >in &&
    { cl-reward -Z --metric "cmd:echo {\\\"error\\\": \\\"no reference here\\\"}" in >out 2>err; test $? = 1; } &&
    grep -q "cmd: no reference here" err &&
    { cl-reward -Z --metric "cmd:echo {\\\"s\\\": \\\"high\\\"}" in >out 2>err; test $? = 1; } && grep -q "'"'"'s'"'"' is not a number" err &&
    echo "{\"messages\":[]}" | { cl-reward -Z --metric cmd:cat >out 2>err; test $? = 1; } && grep -q "'"'"'id'"'"' is not a number" err
'
test_expect 'a program that ends early, exits non-zero or cannot start stops the run (70) and says so' '
    jq -c . "$F/branch-document.jsonl" >in &&
    { cl-reward -Z --metric "cmd:head -n 1 | sed -u s/.*/{}/" in >out 2>err; test $? = 70; } &&
    grep -q "ended its output after 1 of 3 replies" err &&
    { cl-reward -Z --metric "cmd:sed -u s/.*/{}/; exit 3" in >out 2>err; test $? = 70; } && grep -q "exited with status 3" err &&
    { cl-reward -Z --metric "cmd:no-such-program-here" in >out 2>err; test $? = 70; } &&
    { cl-reward -Z --metric "bleu,cmd:" in 2>err; test $? = 2; } && grep -q "needs a program" err
'
test_done
