#!/usr/bin/env bash
# seguro-core: tests (vectors, properties, client pairs), no_std builds for targets with no
# atomics, no std and no allocator, and a fuzzing smoke run of every target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cargo test -p seguro-core
for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    cargo build -p seguro-core --release --target "$target"
done

# Fuzzing smoke run: each target for FUZZ_SECONDS (default 10), seeded from the vectors.
secs="${FUZZ_SECONDS:-10}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
    cargo +nightly install cargo-fuzz --locked
fi
python3 fuzz/seed.py "$SHARED_DIR"
(
    cd fuzz
    for t in frame msg_parse client_lines; do
        cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
    done
)
