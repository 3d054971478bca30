# tests/cli/world-lib.sh — the offline world for CLI tests (sourced after lib.sh): BASE, the
# shipped passive base (examples/world-base), and S, a directory the tests of a file share; the
# whole file is skipped, loudly, where this build has no world.
BASE="$ROOT/examples/world-base"
{ cl-seed --list-presets 2>/dev/null | grep -q '^world' && test -f "$BASE/model.safetensors"; } ||
    skip_all 'this build has no offline world (cl-seed --preset world, world: specs, examples/world-base)'
S="$_top/shared"
mkdir -p "$S"
