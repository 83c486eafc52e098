#!/usr/bin/env bash
# Mutation testing of the core code this change touches (scripts/mutants.sh, diff mode:
# `git diff BASE -- core/`, BASE from .ci/mutants-base on main, updated at each landing).
# A missed mutant fails the phase. Time: the mutants get MUTANTS_BUDGET seconds (default
# 900, about 90 mutants at the ~10 s each measured on 2 shared cores); a larger diff runs
# a deterministic subset (every k-th mutant in source order), which the output says, with
# the command that runs the rest. cargo-mutants itself is built once (~4 min) if missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if ! cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants 27.1.0'; then
    cargo install cargo-mutants --version 27.1.0 --locked
fi
command -v python3 >/dev/null || apt_install python3
# A clean clone nobody edits: mutate it in place, reusing phase 10's build of core.
bash scripts/mutants.sh --in-place --budget "${MUTANTS_BUDGET:-900}"
