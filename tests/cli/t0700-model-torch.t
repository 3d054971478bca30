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
# Structure, ids and text exactly; floating point within float64 rounding (a few ulp), since the
# last bits of a float64 loss differ between CPUs.  The comparator names the first value off.
test_expect 'the committed fixtures are what the generator writes today, to float64 precision' '
    /usr/bin/python3 "$ROOT/tests/torch/gen_model_fixtures.py" fresh &&
    /usr/bin/python3 "$ROOT/tests/torch/cmp_fixtures.py" "$ROOT/tests/data/model/llama.fx" fresh/llama.fx &&
    /usr/bin/python3 "$ROOT/tests/torch/cmp_fixtures.py" "$ROOT/tests/data/model/qwen2.fx" fresh/qwen2.fx
'
# The tolerance must still catch a real change: a float64 off by 1e-9 relative, a float32 off by
# 4 ulp, a changed id and a renamed record each fail, naming the record.
perturb() {  # perturb IN OUT NAME HOW: rewrites the first value of record NAME
    /usr/bin/python3 - "$@" <<-"EOF"
	import struct, sys
	src, dst, name, how = sys.argv[1:]
	b = bytearray(open(src, "rb").read())
	off = 12
	while True:
	    (n,) = struct.unpack_from("<H", b, off)
	    nm = b[off + 2:off + 2 + n].decode()
	    kind = chr(b[off + 2 + n])
	    (cnt,) = struct.unpack_from("<I", b, off + 3 + n)
	    val = off + 7 + n
	    if nm == name:
	        break
	    off = val + cnt * {"f": 4, "d": 8, "i": 4, "s": 1}[kind]
	if how == "rename":
	    b[off + 2] ^= 0x20
	elif kind == "i":
	    struct.pack_into("<i", b, val, struct.unpack_from("<i", b, val)[0] + 1)
	elif kind == "d":
	    struct.pack_into("<d", b, val, struct.unpack_from("<d", b, val)[0] * (1 + 1e-9))
	else:
	    (u,) = struct.unpack_from("<I", b, val)
	    struct.pack_into("<I", b, val, u + 4)
	open(dst, "wb").write(b)
	EOF
}
test_expect 'the fixture comparison still catches a changed value, id or record name' '
    fx="$ROOT/tests/data/model/qwen2.fx" &&
    for case in "loss d" "logits f" "ids i" "traj_lora rename"; do
        set -- $case &&
        perturb "$fx" bad.fx "$1" "$2" &&
        { /usr/bin/python3 "$ROOT/tests/torch/cmp_fixtures.py" "$fx" bad.fx 2>err; test $? = 1; } &&
        grep -q "$1" err && cat err || exit 1
    done
'
test_done
