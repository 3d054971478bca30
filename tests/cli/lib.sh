# tests/cli/lib.sh — a small git-style TAP harness for CLI tests.
#
#   . "$(dirname "$0")/lib.sh"
#   test_expect 'bad JSON on line 2 exits 65 and names the line' '
#       printf "{}\n{x\n" | cl-pairs -Z >out 2>err; test $? = 65 && grep -q ":2:" err
#   '
#   test_done
#
# Each test body runs in a fresh scratch directory ($TMP) with bin/ first in PATH.  Failing
# bodies print their commands' output as TAP comments on stderr (TAP's diagnostics stream), so
# that prove shows why a test failed without -v.  `skip_all "why"` skips the file loudly,
# `test_skip 'description' 'why'` one test.
set -u
TESTS_DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$TESTS_DIR/.." && pwd)
: "${CL_BIN:=$ROOT/bin}"
: "${CL_TESTBIN:=$ROOT/build/tests}"
# cl-reward's default token ranks (make test installs them; variant builds' bin/ is elsewhere).
: "${CL_CL100K:=$ROOT/share/cl/cl100k_base.tiktoken}"
PATH="$CL_BIN:$PATH"
export PATH CL_BIN CL_TESTBIN CL_CL100K ROOT TESTS_DIR
unset OPENAI_API_KEY OPENAI_BASE_URL ANTHROPIC_API_KEY ANTHROPIC_BASE_URL AZURE_OPENAI_API_KEY \
    AZURE_OPENAI_ENDPOINT OPENAI_API_VERSION CL_ZSTD_LEVEL 2>/dev/null || true
export NO_COLOR=1
FIXTURES="$TESTS_DIR/fixtures"
_n=0
_failed=0
_top=$(mktemp -d "${TMPDIR:-/tmp}/cl-test.XXXXXX")
trap 'rm -rf "$_top"' EXIT

test_expect() {
    _n=$((_n + 1))
    TMP="$_top/t$_n"
    mkdir -p "$TMP"
    if (cd "$TMP" && eval "$2") >"$_top/log$_n" 2>&1; then
        echo "ok $_n - $1"
    else
        echo "not ok $_n - $1"
        { echo "# $(basename "$0") test $_n failed: $1"; sed 's/^/# /' "$_top/log$_n" | head -40; } >&2
        _failed=$((_failed + 1))
    fi
}

skip_all() {
    echo "1..0 # SKIP $1"
    echo "SKIP: $(basename "$0"): $1" >&2
    exit 0
}

# test_skip 'description' 'why': a test this machine cannot run, counted by prove as skipped
# (TAP "# SKIP") and named on stderr, never reported as passed.
test_skip() {
    _n=$((_n + 1))
    echo "ok $_n - $1 # SKIP $2"
    echo "SKIP: $(basename "$0"): $1: $2" >&2
}

test_done() {
    echo "1..$_n"
    [ "$_failed" = 0 ]
}

# PY: a python3 that imports NLTK (Debian's python3-nltk, the reference of the BLEU tests),
# or the whole file is skipped loudly.
need_nltk() {
    PY=""
    for p in python3 /usr/bin/python3; do
        if "$p" -c "import nltk" 2>/dev/null; then PY=$p; break; fi
    done
    [ -n "$PY" ] || skip_all "python3-nltk is not installed (scripts/install-deps installs it)"
    export PY
}

# Decompress-or-cat: records as plain text whatever the framing.
records() { zstd -dcf "$@"; }
