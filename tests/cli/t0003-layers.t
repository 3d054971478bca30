#!/bin/sh
# lib/'s layers (README.md, Architecture): lower layers never include higher ones, every include
# names its folder, and no file sits outside a layer.  scripts/check-layers is the rule; these
# tests show that it holds for the tree and that it catches each kind of breach.
. "$(dirname "$0")/lib.sh"

check="$ROOT/scripts/check-layers"

# A copy of lib/'s sources to break on purpose.
copy_lib() { mkdir tree && (cd "$ROOT" && tar cf - lib) | tar xf - -C tree; }

test_expect 'the tree keeps its layering' '
    sh "$check" "$ROOT" >out 2>&1 || { cat out; false; }; ! test -s out
'
test_expect 'core including collab is caught, with the file and line named' '
    copy_lib && printf "#include \"collab/pairs.h\"\n" >>tree/lib/core/buf.c &&
    { sh "$check" tree >out; test $? = 1; } &&
    grep -Eq "^lib/core/buf.c:[0-9]+: layer .core. includes \"collab/pairs.h\"" out
'
test_expect 'llm including collab is caught (the client knows no CollabLLM)' '
    copy_lib && printf "#include \"collab/judge.h\"\n" >>tree/lib/llm/http.c &&
    { sh "$check" tree >out; test $? = 1; } && grep -q "lib/llm/http.c:.*collab/judge.h" out
'
test_expect 'model including train is caught' '
    copy_lib && printf "#include \"train/data.h\"\n" >>tree/lib/model/gemm.h &&
    { sh "$check" tree >out; test $? = 1; } && grep -q "lib/model/gemm.h:.*train/data.h" out
'
test_expect 'an include without its folder is caught' '
    copy_lib && printf "#include \"json.h\"\n" >>tree/lib/collab/seed.c &&
    { sh "$check" tree >out; test $? = 1; } && grep -q "lib/collab/seed.c:.*has no folder" out
'
test_expect 'a file loose in lib/ or an unknown folder is caught' '
    copy_lib && : >tree/lib/stray.c && mkdir tree/lib/misc && : >tree/lib/misc/x.c &&
    { sh "$check" tree >out; test $? = 1; } &&
    grep -q "lib/stray.c: a file outside every layer folder" out && grep -q "lib/misc/: not a known layer" out
'
test_expect 'system includes and same-layer includes pass' '
    copy_lib && printf "#include <stdio.h>\n#include \"core/err.h\"\n#include \"collab/conv.h\"\n" >>tree/lib/collab/seed.c &&
    sh "$check" tree
'
test_done
