#!/usr/bin/env bash
# Formatting and clippy (warnings are errors) over the whole workspace. One clippy run with
# every feature: the feature-less library builds are compiled (and so checked) by the
# microcontroller target builds of phases 10 and 30.
set -euo pipefail
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
