#!/usr/bin/env bash
# Formatting and clippy (warnings are errors) over the whole workspace.
set -euo pipefail
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings
