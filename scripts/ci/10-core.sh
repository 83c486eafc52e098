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
# Two well-formed invites (docs/invite.md) to start the invite target from.
mkdir -p fuzz/corpus/invite
printf '%s' 'seguro://0.tcp.eu.ngrok.io:12345,192.168.1.20:5000/v=1/k=p256:qqdooqsyh4vhmp6s4s7li2br6kehynqqos43prqfzm2oxbjwa5qq/c=so6i' >fuzz/corpus/invite/seed-1
printf '%s' 'seguro://[fd00::1]:5000,h:1/v=1/k=p256:qqdooqsyh4vhmp6s4s7li2br6kehynqqos43prqfzm2oxbjwa5qq/b=rsa:kkppedqcardwphwp54lgvdnwcbfwrzzdors6qnlrpugtkoiuh2cq/t=abcdefghijklmnop234567/c=omyr' >fuzz/corpus/invite/seed-2
# A name registry with two owners (host-std/src/server/registry.rs).
mkdir -p fuzz/corpus/server_registry
printf 'seguro-names 1\nname ana AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8= 1764547200 1764633600\nname jos%%C3%%A9 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8= AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= 1764547200 1764547200\n' >fuzz/corpus/server_registry/seed-1
(
    cd fuzz
    for t in frame msg_parse client_lines v2_wire v2_ratchet invite \
        server_reader server_hello server_router server_registry server_prekeys embassy_cert client_decrypt; do
        cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
    done
)
