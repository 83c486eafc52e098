#!/usr/bin/env bash
# Seguro's whole test suite. Installs what a fresh machine lacks (rustup targets, Debian and
# Python packages; run as root), then runs every phase in scripts/ci/ in order and reports.
#   scripts/test.sh            all phases
#   scripts/test.sh 10 20      only the phases whose number is given
set -uo pipefail
cd "$(dirname "$0")/.."
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

want=("$@")
passed=0
failed=0
failures=()
start_all=$SECONDS
for phase in scripts/ci/[0-9][0-9]-*.sh; do
    num=$(basename "$phase" | cut -c1-2)
    if [ ${#want[@]} -gt 0 ] && [ "$num" != 00 ] && [[ ! " ${want[*]} " =~ " $num " ]]; then
        continue
    fi
    echo "=== $(basename "$phase") ==="
    start=$SECONDS
    if bash "$phase"; then
        passed=$((passed + 1))
        echo "=== $(basename "$phase"): ok in $((SECONDS - start)) s ==="
    else
        failed=$((failed + 1))
        failures+=("$(basename "$phase")")
        echo "=== $(basename "$phase"): FAILED after $((SECONDS - start)) s ==="
        # Without the setup nothing else can run.
        [ "$num" = 00 ] && break
    fi
done
echo "total time: $((SECONDS - start_all)) s"
[ $failed -gt 0 ] && echo "failed phases: ${failures[*]}"
echo "phases: $passed passed, $failed failed"
[ $failed -eq 0 ]
