#!/bin/sh
# GRPO's loss and gradients against float64 PyTorch, regenerated: with Debian's python3-torch the
# GRPO fixture generator runs afresh and test_finetune (whose GRPO cases read the grpo-*.fx
# fixtures) is run against its output; without torch, test_finetune still checks the committed
# fixtures.
. "$(dirname "$0")/lib.sh"

/usr/bin/python3 -c 'import torch' 2>/dev/null ||
    skip_all 'python3-torch is not installed (apt-get install python3-torch); committed fixtures are checked by test_finetune'

test_expect 'the C GRPO step matches freshly generated float64 PyTorch fixtures' '
    /usr/bin/python3 "$ROOT/tests/torch/gen_grpo_fixtures.py" fresh &&
    cp "$ROOT/tests/data/model/llama.fx" "$ROOT/tests/data/model/qwen2.fx" fresh/ &&
    (cd "$ROOT" && CL_MODEL_FIXTURES="$TMP/fresh" "$CL_TESTBIN/test_finetune") >out 2>&1 ||
    { cat out; false; }
'
test_done
