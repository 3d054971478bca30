#!/bin/sh
# The schema fuzzer (tests/fuzz/schema-fuzz.py), a bounded sample: every tool mode, fields of
# cl-records(5) replaced by values of the wrong kind, invalid UTF-8 or 10 MB strings, each run
# ending in a clear error or a documented meaning.  `make fuzz-schema` runs every case under
# ASan+UBSan.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip_all "python3 is not installed (scripts/install-deps installs it)"
test -x "$CL_TESTBIN/mockllm" || skip_all "build/tests/mockllm is not built (make check builds it)"

test_expect 'a sample of 250 type-confusion cases over every tool mode: no signal, hang or unexplained status' '
    python3 "$TESTS_DIR/fuzz/schema-fuzz.py" --bin "$CL_BIN" --mock "$CL_TESTBIN/mockllm" \
        --sample 250 --seed "${CL_FUZZ_SEED:-1}" --budget 45 >log 2>&1; rc=$?; cat log; test $rc = 0 &&
    grep -q "^schema-fuzz: [0-9]* cases of [0-9]* run" log
'
test_done
