#!/bin/sh
# Progress on stderr while models are called: driven by time, live on a terminal, timed plain
# lines elsewhere, never on stdout, silenced by -q and --no-progress.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mock.sh"
. "$(dirname "$0")/rollout.sh"

command -v python3 >/dev/null || skip_all "python3 is not installed (needed for a pseudo-terminal)"
R="-Z --no-cache --assistant openai:asst --user openai:usr --max-turns 3"

test_expect 'off a terminal, plain progress lines come every --progress seconds while calls are out' '
    endless_script >script && mock_start --script script --latency 300 && seeds 3 >in &&
    cl-rollout --full $R --progress 0.5 --api-base "$MOCK_URL" in >out 2>err &&
    test "$(wc -l <out)" = 3 && ! grep -q records out &&
    grep "^cl-rollout: records " err >lines && test "$(wc -l <lines)" -ge 2 &&
    grep -q "records 0/3, 0.0/s; [0-9]* calls (0 cached), 3 in flight, 0 failed, 0 retries, [0-9k.M]*/[0-9k.M]* tokens in/out, [0-9.]* calls/s\$" lines &&
    ! grep -q "$(printf "\r")" err &&
    tail -n 2 err | grep -q "records in, 3 out"
'
test_expect 'dollars are shown against --budget-usd' '
    endless_script >script && mock_start --script script --latency 300 && seeds 2 >in &&
    cl-rollout --full $R --progress 0.4 --price 1000,1000 --budget-usd 90 --api-base "$MOCK_URL" in >out 2>err &&
    grep -q "^cl-rollout: records .*, \$[0-9.]* of \$90.00, " err
'
test_expect 'a run shorter than --progress prints no progress line, --no-progress and -q none at all' '
    endless_script >script && mock_start --script script --latency 100 && seeds 2 >in &&
    cl-rollout --full $R --api-base "$MOCK_URL" in >out 2>err && ! grep -q "records [0-9]" err &&
    cl-rollout --full $R --no-progress --progress 0.1 --api-base "$MOCK_URL" in >out 2>err && ! grep -q "records [0-9]" err &&
    cl-rollout --full $R -q --progress 0.1 --api-base "$MOCK_URL" in >out 2>err && ! test -s err
'
test_expect 'on a terminal the line is redrawn in place several times before the end, and cleared' '
    endless_script >script && mock_start --script script --latency 300 && seeds 2 >in &&
    python3 - "$MOCK_URL" >tty.out <<PY &&
import os, pty, sys, subprocess
m, s = pty.openpty()
p = subprocess.Popen("cl-rollout --full $R -o out --api-base " + sys.argv[1] + " in", shell=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=s)
os.close(s)
data = b""
while True:
    try:
        chunk = os.read(m, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
p.wait()
sys.stdout.write(data.decode())
sys.exit(p.returncode)
PY
    test "$(wc -l <out)" = 2 &&
    tr "\r" "\n" <tty.out | grep -c "^cl-rollout: records .* in flight" >n && test "$(cat n)" -ge 4 &&
    grep -q "$(printf "\033")\[K" tty.out && grep -q "records in, 2 out" tty.out
'
test_expect 'cl-judge shows the same progress' '
    mock_start --latency 300 && cp "$FIXTURES/judge/full.jsonl" in &&
    cl-judge --judge openai:j --judge-retries 0 --no-cache --api-base "$MOCK_URL" --progress 0.3 -Z --helpfulness in >out 2>err;
    grep -q "^cl-judge: records 0/1, 0.0/s; 1 calls (0 cached), [01] in flight, " err
'
if [ -x /usr/bin/python3 ]; then
test_expect 'cl-reward shows the sandbox pass rate as the runs finish' '
    cl-reward -Z --metric pass_rate --timeout 30 --cpu 1 --mem 1024 --fsize 16 --nproc 32 --jobs 1 \
        --progress 0.2 "$FIXTURES/reward/branch-code.jsonl" >out 2>err &&
    grep -q "^cl-reward: records 0/1, 0.0/s; sandbox [123] runs, 1 passed ([0-9]*%)\$" err
'
else
    test_skip 'cl-reward shows the sandbox pass rate as the runs finish' '/usr/bin/python3 is needed to run code tests'
fi
test_expect 'cl-finetune: a step line once --progress seconds passed, none with --no-progress' '
    . "$TESTS_DIR/cli/finetune-lib.sh" && ft_data d &&
    cl-finetune --init d/cfg.json --train-tokenizer d/sft.jsonl --vocab 300 --sft d/sft.jsonl --run a \
        --epochs 6 --batch 8 --log-every 1000 --progress 0.000001 2>err &&
    test "$(grep -c "^cl-finetune: step [0-9]*/6 " err)" = 6 &&
    cl-finetune --init d/cfg.json --train-tokenizer d/sft.jsonl --vocab 300 --sft d/sft.jsonl --run b \
        --epochs 6 --batch 8 --log-every 1 --no-progress 2>err &&
    ! grep -q "^cl-finetune: step" err && grep -q "written to" err
'
test_done
