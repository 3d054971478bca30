#!/bin/sh
# The model core against PyTorch, regenerated: when Debian's python3-torch is installed, the
# fixture generator runs afresh, the C model is compared with its output, and the committed
# fixtures must equal what it writes now.  scripts/install-deps installs python3-torch, so CI
# runs this; elsewhere, without torch, the committed fixtures are still checked by the unit test
# test_model_torch.
. "$(dirname "$0")/lib.sh"

/usr/bin/python3 -c 'import torch' 2>/dev/null ||
    skip_all 'python3-torch is not installed (apt-get install python3-torch); committed fixtures are checked by test_model_torch'

test_expect 'the C model matches freshly generated float64 PyTorch fixtures' '
    /usr/bin/python3 "$ROOT/tests/torch/gen_model_fixtures.py" fresh &&
    (cd "$ROOT" && CL_MODEL_FIXTURES="$TMP/fresh" "$CL_TESTBIN/test_model_torch") >out 2>&1 ||
    { cat out; false; }
'
test_expect 'the committed fixtures are exactly what the generator writes today' '
    /usr/bin/python3 "$ROOT/tests/torch/gen_model_fixtures.py" fresh &&
    cmp fresh/llama.fx "$ROOT/tests/data/model/llama.fx" &&
    cmp fresh/qwen2.fx "$ROOT/tests/data/model/qwen2.fx"
'
test_done
