#!/bin/sh
# make install / uninstall: programs, manuals, cl-mockllm, and the pipelines, demo, examples and
# worlds under PREFIX/share/cl, usable from there with nothing of the source tree.
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip_all "jq is not installed (scripts/install-deps installs it)"
# the build the tests run on (build, build-san, ...), relative as the Makefile names it
O=${CL_TESTBIN%/tests}
O=${O#"$ROOT"/}
inst() { make -s -C "$ROOT" O="$O" "$@" >/dev/null; }

test_expect 'make install puts everything under PREFIX; the installed demo runs off PATH, from there alone' '
    P=$PWD/p && inst install PREFIX="$P" &&
    for f in bin/cl-seed bin/cl-rollout bin/cl-mockllm share/man/man1/cl-mockllm.1 share/man/man7/collabllm.7 \
             share/cl/pipelines/collab.mk share/cl/pipelines/common.mk share/cl/pipelines/eval.mk \
             share/cl/pipelines/finetune.mk share/cl/pipelines/demo.sh share/cl/examples/math.jsonl \
             share/cl/examples/finetune/sft.jsonl share/cl/examples/world-base/model.safetensors \
             share/cl/worlds/math-world.jsonl; do
        test -s "$P/$f" || { echo "missing $f"; exit 1; }
    done &&
    grep -q "^BIN *?= $P/bin\$" "$P/share/cl/pipelines/common.mk" &&
    mkdir run && cd run &&
    env -i PATH=/usr/bin:/bin HOME="$PWD" OUT=demo TRAIN=6 TEST=9 K=2 SFT_STEPS=1 STEPS=1 \
        sh "$P/share/cl/pipelines/demo.sh" >out 2>err &&
    grep -q "^base " out && grep -q "^collab " out && test -s demo/dpo.jsonl.zst &&
    ! grep -q "$ROOT" err
'
test_expect 'the installed mock server is a program users can script' '
    P=$PWD/p && inst install PREFIX="$P" &&
    echo "{\"match\": \"hello\", \"reply\": \"hi there\"}" >w.jsonl || exit 1
    "$P/bin/cl-mockllm" --script w.jsonl --model m >port 2>/dev/null &
    pid=$!
    i=0; until test -s port; do i=$((i + 1)); [ $i -lt 100 ] || { kill $pid; exit 1; }; sleep 0.05; done
    echo "{\"id\":\"a\",\"prompt\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}" >in &&
    "$P/bin/cl-rollout" -q -Z --no-cache --full --max-turns 1 --assistant openai:m --user openai:m \
        --api-base "http://127.0.0.1:$(cat port)/v1" in >out; rc=$?; kill $pid; test $rc = 0 &&
    jq -e ".messages[1].content == \"hi there\"" out
'
test_expect 'DESTDIR stages the same tree, and make uninstall removes every file it installed' '
    inst install DESTDIR="$PWD/stage" PREFIX=/opt/cl &&
    test -x stage/opt/cl/bin/cl-judge && grep -q "^BIN *?= /opt/cl/bin\$" stage/opt/cl/share/cl/pipelines/common.mk &&
    inst uninstall DESTDIR="$PWD/stage" PREFIX=/opt/cl &&
    test -z "$(find stage -type f)"
'
test_done
