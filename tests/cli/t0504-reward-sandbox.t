#!/bin/sh
# pass_rate: extracted code against the seed's unittest in the sandbox, through cl-reward.
. "$(dirname "$0")/lib.sh"
F="$FIXTURES/reward"
[ -x /usr/bin/python3 ] || skip_all "/usr/bin/python3 is needed to run code tests"
# The wall limit is far above the CPU limit so that a loaded machine still ends the loop by CPU.
LIMITS="--timeout 30 --cpu 1 --mem 1024 --fsize 16 --nproc 32"

test_expect 'passing, failing and looping code score 1, 0, 0 with their status recorded' '
    cl-reward -Z --metric pass_rate $LIMITS --weights pass_rate=1 --stats st.json "$F/branch-code.jsonl" >out 2>err &&
    jq -e "[.candidates[].futures[].scores.pass_rate] == [1, 0, 0]" out &&
    jq -e "[.candidates[].futures[].metric_info.pass_rate.status] == [\"pass\", \"fail\", \"timeout\"]" out &&
    jq -e ".candidates[0].futures[0].metric_info.pass_rate | .tests_run == 2 and .failures == 0" out &&
    jq -e ".candidates[0].futures[1].metric_info.pass_rate | .failures == 2" out &&
    jq -e ".candidates[1].futures[0].metric_info.pass_rate.detail | test(\"CPU\")" out &&
    jq -e ".candidates[0].mr | .mean == 0.5 and .std == 0.5 and .n == 2" out &&
    jq -e ".sandbox | .pass == 1 and .fail == 1 and .timeout == 1 and .error == 0" st.json &&
    grep -q "sandbox: .*seccomp" err
'
test_expect 'by default the address space is the official 300*1024 MB: a 6 GiB mapping passes, --mem 4096 fails it' '
    jq -c ".metadata.test = \"import unittest, mmap\nclass TestCases(unittest.TestCase):\n    def test_x(self):\n        m = mmap.mmap(-1, 6 << 30)\n        m.close()\n\" | .candidates |= .[0:1] | .candidates[0].futures |= .[0:1]" "$F/branch-code.jsonl" >in &&
    cl-reward -q -Z --metric pass_rate --timeout 30 in >out &&
    jq -e ".candidates[0].futures[0].scores.pass_rate == 1" out &&
    cl-reward -q -Z --metric pass_rate --timeout 30 --mem 4096 in >out &&
    jq -e ".candidates[0].futures[0] | .scores.pass_rate == 0 and .metric_info.pass_rate.errors == 1" out
'
test_expect 'metadata.test is preferred to the test inside the JSON completion' '
    jq -c ".metadata.test = \"import unittest\nclass TestCases(unittest.TestCase):\n    def test_x(self):\n        self.assertEqual(task_func(2, 2), 0)\n\"" "$F/branch-code.jsonl" >in &&
    cl-reward -q -Z --metric pass_rate $LIMITS in >out &&
    jq -e "[.candidates[0].futures[].scores.pass_rate] == [0, 1]" out
'
test_expect 'a seed without a unittest is an error, not a zero' '
    jq -c ".completion = \"no json here\"" "$F/branch-code.jsonl" >in &&
    { cl-reward -Z --metric pass_rate $LIMITS in >out 2>err; test $? = 1; } &&
    grep -q "no unittest" err
'
test_expect 'a record that already failed runs no sandbox for its other futures' '
    jq -c "del(.candidates[1].futures[0].extracted)" "$F/branch-code.jsonl" >in &&
    { cl-reward -Z --metric pass_rate $LIMITS --stats st.json in >out 2>err; test $? = 1; } &&
    grep -q "extracted.code is missing" err &&
    jq -e ".sandbox | .pass + .fail + .timeout + .error == 0" st.json
'
test_expect 'the sandbox refuses the network; with every protection off the same code connects' '
    /usr/bin/python3 -c "
import socket, sys, time
s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(30)" >port &
    srv=$!
    for i in 1 2 3 4 5 6 7 8 9 10; do test -s port && break; sleep 0.2; done
    P=$(cat port)
    jq -c --arg p "$P" "del(.candidates[1]) | .candidates[0].futures |= [.[0]] |
        .candidates[0].futures[0].extracted.code = \"import socket\ndef task_func(a, b):\n    return a + b\ntry:\n    socket.create_connection((\\\"127.0.0.1\\\", \(\$p)), timeout=2).close()\n    task_func = None\nexcept OSError:\n    pass\n\"" "$F/branch-code.jsonl" >in
    cl-reward -q -Z --metric pass_rate $LIMITS in >contained
    cl-reward -q -Z --metric pass_rate $LIMITS --no-namespaces in >seccomp_only
    cl-reward -q -Z --metric pass_rate $LIMITS --no-namespaces --no-seccomp in >open
    kill $srv
    jq -e ".candidates[0].futures[0].scores.pass_rate == 1" contained &&
    jq -e ".candidates[0].futures[0].scores.pass_rate == 1" seccomp_only &&
    jq -e ".candidates[0].futures[0].scores.pass_rate == 0" open
'
if [ "$(id -u)" = 0 ]; then
test_expect 'as root, namespaces and the uid drop are active and named' '
    cl-reward -Z --metric pass_rate $LIMITS "$F/branch-code.jsonl" >out 2>err &&
    grep -q "sandbox: netns pidns mountns ipcns read-only private-tmp uid-drop seccomp" err
'
# The host's /run/lock (world-writable, root-owned) took 256 MiB from a test, and the work
# directory was the host's $TMPDIR without a cap: both probes, through cl-reward.
test_expect 'the test cannot write /run/lock, and the work directory and /tmp share a --scratch cap' '
    probe=/run/lock/cl-sandbox-probe-$$ &&
    cat >probe.py <<-EOF &&
	import errno, os, unittest
	class TestCases(unittest.TestCase):
	    def test_run_lock(self):
	        if os.path.isdir("/run/lock"):
	            with self.assertRaises(OSError):
	                with open("$probe", "wb") as f:
	                    f.write(b"x" * (1 << 20))
	    def test_scratch(self):
	        total = 0
	        with self.assertRaises(OSError) as cm:
	            for i in range(40):
	                for k, d in enumerate((".", "/tmp")):
	                    with open("%s/f%d-%d" % (d, k, i), "wb") as f:
	                        for _ in range(4):
	                            f.write(b"x" * (1 << 20))
	                            total += 1 << 20
	        self.assertEqual(cm.exception.errno, errno.ENOSPC)
	        self.assertLessEqual(total, 24 << 20)
	EOF
    jq -c --rawfile t probe.py "del(.candidates[1]) | .candidates[0].futures |= [.[0]] | .metadata.test = \$t" \
        "$F/branch-code.jsonl" >in &&
    cl-reward -q -Z --metric pass_rate $LIMITS --scratch 24 in >out &&
    jq -e ".candidates[0].futures[0].metric_info.pass_rate | .status == \"pass\" and .tests_run == 2" out ||
    { jq .candidates[0].futures[0].metric_info out; false; } &&
    ! test -e "$probe"
'
else
    echo "SKIP: $(basename "$0"): not root, namespace and uid-drop checks skipped (CI runs as root)" >&2
fi
test_expect 'a work directory below a directory closed to the test uid still runs' '
    mkdir -m 700 closed &&
    TMPDIR=$PWD/closed cl-reward -q -Z --metric pass_rate --no-namespaces $LIMITS "$F/branch-code.jsonl" >out &&
    { jq -e "[.candidates[].futures[].metric_info.pass_rate.status] == [\"pass\", \"fail\", \"timeout\"]" out ||
      { jq -c "[.candidates[].futures[].metric_info.pass_rate]" out >&2; false; }; } &&
    test -z "$(ls closed)"
'
test_expect 'a missing interpreter is a configuration error (78) before any record is read' '
    { cl-reward --metric pass_rate --python /nonexistent/python3 "$F/branch-code.jsonl" >out 2>err; test $? = 78; } &&
    grep -q "not found" err && test ! -s out
'
test_done
