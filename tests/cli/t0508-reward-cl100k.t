#!/bin/sh
# cl100k_base, the paper's token count and cl-reward's default: the installed rank file gives
# OpenAI tiktoken's ids (npm tiktoken, WebAssembly of its Rust core) on a corpus of assistant
# replies, cl-reward's counts are the reference's, and a missing or altered file is refused.
. "$(dirname "$0")/lib.sh"
NPM="$TESTS_DIR/npm"
[ -d "$NPM/node_modules/tiktoken" ] || skip_all "npm oracles missing (make oracles installs them)"
command -v node >/dev/null || skip_all "node is missing"
RANKS=${CL_CL100K:-$ROOT/share/cl/cl100k_base.tiktoken}
[ -f "$RANKS" ] || skip_all "cl100k_base.tiktoken missing (make deps installs it)"
export CL_CL100K="$RANKS"
TOK="$CL_TESTBIN/tok"
EX="$ROOT/examples"

# Assistant replies: the shipped reference solutions, code and articles (whitespace runs, code
# indentation, LaTeX, digits, non-ASCII), the assistant turns of the fixtures, and edge cases
# of the pre-tokenisation pattern.
replies() {
    jq -c '.solution' "$EX/math.jsonl"
    jq -c '.code_prompt + .canonical_solution' "$EX/bigcodebench.jsonl"
    jq -c '.text' "$EX/medium.jsonl"
    jq -c '.. | objects | select(.role? == "assistant") | .content | strings' \
        "$FIXTURES"/reward/*.jsonl "$FIXTURES"/judge/full.jsonl
    printf '%s\n' '"I'"'"'ll say it'"'"'S done -- 12345678 items\r\n\r\n  ok  "' \
        '"naïve café 東京 🤖🤖 x\u00a0y\t\tz"' '"  \n\n   indented\n\tcode()\n"' '"<|endoftext|> is text"'
}

test_expect 'the installed file is OpenAI'"'"'s cl100k_base.tiktoken (SHA-256 pinned by tiktoken)' '
    test "$(sha256sum <"$RANKS" | cut -d" " -f1)" = 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7
'
# same_counts CORPUS: cl-reward's count of each line as an assistant reply is the reference's.
same_counts() {
    jq -c "{messages: [{role: \"user\", content: \"go\"}, {role: \"assistant\", content: .}]}" "$1" >in &&
    cl-reward -q -Z --metric tokens in >out &&
    node "$NPM/cl100k-oracle.mjs" <"$1" | jq -c length >want &&
    jq -c .metric_info.tokens.assistant out >got && test -s got && cmp want got
}
test_expect 'cl-reward counts cl100k by default: each assistant reply'"'"'s count is tiktoken'"'"'s' '
    replies >corpus.jsonl && test "$(wc -l <corpus.jsonl)" -gt 90 && same_counts corpus.jsonl &&
    jq -s -e "all(.[]; .metric_info.tokens.method == \"cl100k_base\")" out
'
test_expect 'and on a fuzz corpus (mixed scripts, digits, spaces, punctuation runs)' '
    "$TOK" corpus 9 600 >fuzz.jsonl && same_counts fuzz.jsonl
'
test_expect 'a file that is not OpenAI'"'"'s is refused (65) with both digests' '
    head -n 100000 "$RANKS" >short.tiktoken && echo "{\"messages\":[]}" >in &&
    { CL_CL100K=short.tiktoken cl-reward -Z --metric tokens in >out 2>err; test $? = 65; } &&
    grep -q "not OpenAI.s cl100k_base.tiktoken (SHA-256 [0-9a-f]*, want 223921b7" err
'
test_expect 'a missing file is 66 and says how to install one or fall back to words' '
    echo "{\"messages\":[]}" >in &&
    { CL_CL100K=nowhere cl-reward -Z --metric tokens in >out 2>err; test $? = 66; } && grep -q "CL_CL100K=nowhere" err &&
    mkdir bin && cp "$(command -v cl-reward)" bin/cl-reward2 &&
    { env -u CL_CL100K TIKTOKEN_CACHE_DIR=$PWD bin/cl-reward2 -Z --metric tokens in >out 2>err; test $? = 66; } &&
    grep -q "bin/../share/cl/cl100k_base.tiktoken and $PWD/9b5ad71b2ce5302211f9c61530b329a4922fc6a4" err &&
    grep -q "make deps" err && grep -q "tokens words" err
'
test_expect 'it is found beside the program (../share/cl) and in Python tiktoken'"'"'s cache' '
    echo "{\"messages\":[{\"role\":\"assistant\",\"content\":\"hello world\"}]}" >in &&
    mkdir -p p/bin p/share/cl c && cp "$(command -v cl-reward)" p/bin/ && cp "$RANKS" p/share/cl/ &&
    env -u CL_CL100K p/bin/cl-reward -q -Z --metric tokens in | jq -e ".scores.tokens == 2" &&
    cp "$RANKS" c/9b5ad71b2ce5302211f9c61530b329a4922fc6a4 && rm -r p/share &&
    env -u CL_CL100K TIKTOKEN_CACHE_DIR=$PWD/c p/bin/cl-reward -q -Z --metric tokens in | jq -e ".scores.tokens == 2"
'
test_expect 'words is the named fallback and warns that it is not the paper'"'"'s count (-q silences)' '
    echo "{\"messages\":[{\"role\":\"assistant\",\"content\":\"hello world\"}]}" >in &&
    cl-reward -Z --metric tokens --tokens words in 2>err | jq -e ".scores.tokens == 2 and .metric_info.tokens.method == \"words\"" &&
    grep -q "not the paper.s cl100k_base tokens" err &&
    cl-reward -q -Z --metric tokens --tokens words in 2>err >/dev/null && test ! -s err
'
test_done
