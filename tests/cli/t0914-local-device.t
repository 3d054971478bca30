#!/bin/sh
# local:DIR+device=cuda — the local engine's batched decode with its products on the GPU: greedy
# replies of a model that memorised eight dialogues are the CPU's, the cache keeps the two
# apart (the GPU rounds products' inputs to bf16: its replies are its own), and bad or
# unavailable devices are clear errors.
# The device client is $CL_TESTBIN/llmcall in a CUDA build on a machine with a GPU (make CUDA=1
# test, scripts/device-check), else tests/llmcall-emu: the same client over lib/cuda's host code
# with a CPU emulation of CUDA and cuBLAS (tests/cuda-emu), so the wiring is tested everywhere.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
if "$CL_TESTBIN/cuda_probe" >/dev/null 2>&1; then
    DEV=$CL_TESTBIN/llmcall
else
    DEV=$CL_TESTBIN/llmcall-emu
fi
[ -x "$DEV" ] || skip_all "no CUDA-enabled llmcall here ($DEV): a CUDA=1 build tests the device with scripts/device-check"
S="$_top/shared"
ft_base "$S" 2>"$_top/base.err" || { cat "$_top/base.err"; echo "Bail out! cannot train the model"; exit 1; }
M="$S/base/final"
questions() { jq -c '{id: .messages[0].content, messages: [.messages[0]]}' "$S/sft.jsonl"; }

test_expect 'greedy replies on the device are the dialogues the model memorised, as on the CPU' '
    questions >in &&
    "$CL_TESTBIN/llmcall" -q -Z --assistant "local:$M" --assistant-temperature 0 --no-cache in >cpu &&
    "$DEV" -q -Z --assistant "local:$M+device=cuda" --assistant-temperature 0 --no-cache in >dev &&
    jq -r .reply dev >got && jq -r ".messages[1].content" "$S/sft.jsonl" >want && diff want got &&
    jq -r .reply cpu | diff want -
'
test_expect 'the cache keeps device and CPU replies apart, and replays each' '
    questions >in &&
    "$CL_TESTBIN/llmcall" -q -Z --assistant "local:$M" --assistant-temperature 0 --cache c --show-cached in >a &&
    "$DEV" -q -Z --assistant "local:$M+device=cuda" --assistant-temperature 0 --cache c --show-cached in >b &&
    "$DEV" -q -Z --assistant "local:$M+device=cuda" --assistant-temperature 0 --cache c --show-cached in >b2 &&
    jq -e -s "all(.[]; .cached == 0)" a && jq -e -s "all(.[]; .cached == 0)" b &&
    jq -e -s "all(.[]; .cached == 1)" b2
'
test_expect 'a device name that is not one is a configuration error (78) naming the option' '
    questions >in &&
    { "$DEV" -q -Z --assistant "local:$M+device=gpu" --no-cache in 2>err; test $? = 78; } &&
    grep -q "+device=cpu|cuda|cuda:N" err
'
test_expect 'a GPU the machine does not have is unavailable (69), and says so' '
    questions >in &&
    { "$DEV" -q -Z --assistant "local:$M+device=cuda:7" --no-cache in 2>err; test $? = 69; } &&
    grep -q "local:$M+device=cuda:7" err && grep -Eq "has [0-9]+ CUDA GPU" err
'
if "$CL_TESTBIN/cuda_probe" 2>&1 | grep -q "built without CUDA"; then
    test_expect 'a program built without CUDA says so (69)' '
        questions >in &&
        { "$CL_TESTBIN/llmcall" -q -Z --assistant "local:$M+device=cuda" --no-cache in 2>err; test $? = 69; } &&
        grep -q "built without CUDA" err
    '
else
    test_skip 'a program built without CUDA says so (69)' 'this build has CUDA'
fi
test_done
