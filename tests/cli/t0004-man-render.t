#!/bin/sh
# Every man page as a reader sees it (rendered by mandoc): every option of --help appears there
# exactly as the user types it, and none of the rendering accidents that source checks miss
# (an option written --role--temperature, quotes nested into ‘x‘y’’, braces left open).
. "$(dirname "$0")/lib.sh"
command -v mandoc >/dev/null || skip_all "mandoc is not installed (scripts/install-deps installs it)"

# render PAGE: the text of man/PAGE without bold and underline.
render() { mandoc -T utf8 "$ROOT/man/$1" | sed 's/.\x08//g'; }

for page in $(cd "$ROOT/man" && ls); do
    test_expect "$page renders without quoting, dash or brace accidents" "
        render $page >text && test -s text &&
        ! grep -nE -- '[^ (]--[A-Za-z]+--|--[a-z]+--[a-z]' text &&
        ! grep -nE -- '‘[^’ ]*‘|’’|‘’|“”|””|““' text &&
        ! grep -nE -- '\\{\\{[a-z_]*[^a-z_}]|[^{]\\b[a-z_]+\\}\\}\\}' text &&
        ! grep -nE -- '\\\\[-(&e]' text
    "
done

for p in cl-seed cl-rollout cl-judge cl-reward cl-pairs cl-finetune; do
    test_expect "every option of $p --help appears, as typed, in the rendered $p(1), collabllm(7) or cl-llm(7)" "
        { render $p.1; render collabllm.7; render cl-llm.7; } >text &&
        $p --help | grep -oE -- '--[A-Za-z][A-Za-z0-9-]*' | sort -u >opts && test -s opts &&
        while read -r o; do
            case \$o in
            --ROLE*) g=--role\${o#--ROLE} ;; # the placeholder, in cl-llm(7)
            *) g=\$o ;;
            esac
            grep -qE -- \"\$g([^A-Za-z0-9-]|\\\$)\" text || { echo \"missing \$o\"; exit 1; }
        done <opts
    "
done
test_done
