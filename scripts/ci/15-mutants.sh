#!/usr/bin/env bash
# Mutation testing of the core code this change touches (scripts/mutants.sh, diff mode:
# `git diff BASE -- core/`, BASE from .ci/mutants-base on main, updated at each landing).
# Missed mutants are listed with per-file figures; they fail the phase only with
# MUTANTS_STRICT=1 (the landing that brought the chat layer, v2 and the store in core
# still has survivors, listed in the issue notes); a run that cannot be made always fails.
# Time: the mutants get MUTANTS_BUDGET seconds (default 600, about 60 mutants at the
# ~10 s each measured on 2 shared cores); a larger diff runs
# a deterministic subset (every k-th mutant in source order), which the output says, with
# the command that runs the rest. cargo-mutants itself is built once (~4 min) if missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if ! cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants 27.1.0'; then
    cargo install cargo-mutants --version 27.1.0 --locked
fi
command -v python3 >/dev/null || apt_install python3
# A clean clone nobody edits: mutate it in place, reusing phase 10's build of core.
base=$(tr -d ' \n' <.ci/mutants-base)
if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
    echo "15-mutants: the base $base is not in this clone (shallow?): fetching it"
    git fetch -q --depth=1000 origin "$base" 2>/dev/null || git fetch -q --unshallow 2>/dev/null || true
fi
status=0
bash scripts/mutants.sh --in-place --budget "${MUTANTS_BUDGET:-600}" || status=$?
if [ "$status" = 1 ] && [ "${MUTANTS_STRICT:-0}" != 1 ]; then
    echo "15-mutants: mutants were missed (listed above); not fatal without MUTANTS_STRICT=1"
    status=0
fi
exit "$status"
