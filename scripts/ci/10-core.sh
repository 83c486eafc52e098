#!/usr/bin/env bash
# seguro-core: tests (vectors, properties, client pairs), no_std builds for targets with no
# atomics, no std and no allocator, and a fuzzing smoke run of every target.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cargo test -p seguro-core

# The v2 vectors are exactly what the independent Python implementation writes.
command -v python3 >/dev/null || apt_install python3
python3 -c 'import cryptography' 2>/dev/null \
    || python3 -m pip install --quiet cryptography 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages cryptography 2>/dev/null \
    || apt_install python3-cryptography
python3 tools/v2vectors/gen.py --check
python3 core/tests/vectors/fingerprints.py --check
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
python3 tools/v2vectors/seed_fuzz.py
(
    cd fuzz
    for t in frame msg_parse client_lines v2_wire v2_ratchet; do
        cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
    done
)
