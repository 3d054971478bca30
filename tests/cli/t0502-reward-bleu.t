#!/bin/sh
# cl-reward --metric bleu against NLTK itself, run live (Debian python3-nltk), to 1e-9.
. "$(dirname "$0")/lib.sh"
G="$FIXTURES/bleu"
need_nltk

test_expect 'the committed golden corpus is what NLTK gives today' '
    "$PY" "$G/gen-golden.py" corpus | "$PY" "$G/gen-golden.py" score >golden &&
    cmp golden "$G/golden.jsonl"
'
test_expect 'cl-reward bleu equals NLTK sentence_bleu on every pair, live, to 1e-9' '
    "$PY" "$G/gen-golden.py" corpus >corpus &&
    jq -c "{id: (input_line_number | tostring), completion: .ref, messages: [], extracted: {document: .hyp}}" corpus >recs &&
    cl-reward -q -Z --metric bleu recs | jq -r ".scores.bleu" >ours &&
    "$PY" "$G/gen-golden.py" score <corpus | jq -r .bleu >theirs &&
    test "$(wc -l <ours)" -gt 200 &&
    paste ours theirs | awk "{ d = \$1 - \$2; if (d < 0) d = -d; if (d > 1e-9) { print NR, \$0; bad = 1 } } END { exit bad }"
'
test_expect 'Unicode is scored by code point like Python, not by byte' '
    printf "{\"completion\":\"ça coûte trés cher ici\",\"messages\":[],\"extracted\":{\"document\":\"ça coûte très cher ici\"}}\n" >in &&
    cl-reward -q -Z --metric bleu in | jq -r ".scores.bleu" >ours &&
    "$PY" -c "
import sys, warnings
from nltk.translate.bleu_score import sentence_bleu as b
warnings.simplefilter(\"ignore\")
ref, hyp = \"ça coûte trés cher ici\", \"ça coûte très cher ici\"
ours = float(open(\"ours\").read())
chars, octets = b([ref], hyp), b([ref.encode()], hyp.encode())
print(ours, chars, octets)
sys.exit(0 if abs(ours - chars) < 1e-12 and abs(chars - octets) > 1e-3 else 1)
"
'
test_expect 'a document with an embedded NUL is scored to its end, like NLTK' '
    printf "{\"completion\":\"one\\\\u0000two three four five six\",\"messages\":[],\"extracted\":{\"document\":\"one\\\\u0000two three four fiv sixty\"}}\n" >in &&
    cl-reward -q -Z --metric bleu,bleu-word in | jq -r ".scores.bleu" >ours &&
    "$PY" -c "
import sys, warnings
from nltk.translate.bleu_score import sentence_bleu as b
warnings.simplefilter(\"ignore\")
theirs = b([\"one\\0two three four five six\"], \"one\\0two three four fiv sixty\")
ours = float(open(\"ours\").read())
print(ours, theirs)
sys.exit(0 if abs(ours - theirs) < 1e-9 and theirs < 0.99 else 1)
"
'
test_done
