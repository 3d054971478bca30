#!/bin/sh
# Interrupts keep work: SIGINT or SIGTERM in the middle of a run lets the step finish, saves a
# checkpoint, names the --resume command and exits 130 / 143; the resumed run ends with the same
# weights and metrics as one never interrupted.  A second signal ends the run at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/finetune-lib.sh"
S="$_top/shared"
ft_data "$S"

# signal_at RUN LINES SIGNALS CMD...: runs CMD (its stderr in RUN.err), sends SIGNALS once
# RUN/metrics.jsonl has LINES lines, and prints how CMD ended: "exit N" or "signal N".  With two
# signals ("INT INT") the second goes once CMD said it is finishing its step: sent back to back,
# the two would merge into one.  A run that finished before the signals came proves nothing, so
# it is made again (in a fresh RUN), up to five times.
signal_at() {
    run=$1 lines=$2 sigs=$3; shift 3
    for attempt in 1 2 3 4 5; do
        rm -rf "$run"
        how=$(perl -e '
            my ($run, $lines, $sigs, @cmd) = @ARGV;
            my @sigs = split " ", $sigs;
            my $pid = fork // die "fork: $!";
            if (!$pid) { open STDERR, ">", "$run.err" or die; exec @cmd or die "exec: $!" }
            sub count { my ($f, $re) = @_; my $n = 0; open my $h, "<", $f or return 0; /$re/ && $n++ while <$h>; $n }
            while (@sigs && waitpid($pid, 1) == 0) {   # 1: WNOHANG
                if (count("$run/metrics.jsonl", qr/^/) >= $lines &&
                    ($sigs eq "@sigs" || count("$run.err", qr/a second signal aborts/))) {
                    kill shift(@sigs), $pid;
                }
                select undef, undef, undef, 0.005;
            }
            waitpid $pid, 0;
            print $? & 127 ? "signal " . ($? & 127) : "exit " . ($? >> 8);
        ' "$run" "$lines" "$sigs" "$@")
        [ "$how" = "exit 0" ] || break
    done
    echo "$how"
}
same_metrics() { # everything but the clock
    jq -c "del(.tokens_per_s, .elapsed_s, .cpu_s)" "$1" >m1 && jq -c "del(.tokens_per_s, .elapsed_s, .cpu_s)" "$2" >m2 && cmp m1 m2
}
# A from-scratch model, 1200 steps of a few milliseconds, checkpoints only at the end.
set -- --init "$S/cfg.json" --train-tokenizer "$S/sft.jsonl" --vocab 300 --sft "$S/sft.jsonl" \
    --epochs 300 --batch 2 --lr 3e-3 --log-every 1 --seed 1
cl-finetune "$@" -q --run "$_top/straight" 2>"$_top/straight.err" ||
    { cat "$_top/straight.err"; echo "Bail out! cannot train the tiny model"; exit 1; }
ARGS="$*"

for sig in INT:130 TERM:143; do
    name=${sig%:*} status=${sig#*:}
    test_expect "SIG$name mid-run: the step finishes, a checkpoint is saved, exit $status, --resume named" '
        set -- $ARGS &&
        how=$(signal_at b 20 '"$name"' cl-finetune "$@" --run b) && echo "$how" && cat b.err &&
        test "$how" = "exit '"$status"'" && ! test -e b/final &&
        n=$(ls -d b/checkpoint-* | sed -n "\$s/.*-0*//p") && test "$n" -ge 20 && test "$n" -lt 1200 &&
        grep -q "finishing the current step to save a checkpoint; a second signal aborts at once" b.err &&
        grep -q "interrupted by SIG'"$name"' after step $n of 1200; checkpoint-$(printf %06d "$n") saved" b.err &&
        grep -q "Continue with: cl-finetune --resume b\$" b.err &&
        test "$(wc -l <b/metrics.jsonl)" = "$n"
    '
    test_expect "the run stopped by SIG$name, resumed, equals the uninterrupted run (weights and metrics)" '
        set -- $ARGS &&
        how=$(signal_at b 20 '"$name"' cl-finetune "$@" --run b) && test "$how" = "exit '"$status"'" &&
        cl-finetune --resume b -q &&
        cmp "$_top/straight/final/model.safetensors" b/final/model.safetensors &&
        same_metrics "$_top/straight/metrics.jsonl" b/metrics.jsonl
    '
done
# Steps long enough (a second or so) for the second signal to come while the first one's step runs.
jq ".hidden_size = 256 | .intermediate_size = 1024 | .num_hidden_layers = 6" "$S/cfg.json" >"$S/big.json"
test_expect 'a second signal aborts at once: killed by SIGINT mid-step, nothing saved, no resume hint' '
    set -- --init "$S/big.json" --train-tokenizer "$S/sft.jsonl" --vocab 300 --sft "$S/sft.jsonl" --max-steps 20 \
        --batch 8 --log-every 1 &&
    how=$(signal_at b 1 "INT INT" cl-finetune "$@" --run b) && echo "$how" && cat b.err &&
    test "$how" = "signal 2" && grep -q "a second signal aborts at once" b.err &&
    ! ls -d b/checkpoint-* 2>/dev/null && ! grep -q "resume" b.err
'
test_done
