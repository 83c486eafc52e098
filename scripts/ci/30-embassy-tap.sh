#!/usr/bin/env bash
# seguro-embassy: unit and pinning tests (including the guard against certificate-less
# handshakes), builds for two microcontroller targets, and the end-to-end test of the
# Linux runner over a TAP device in a network namespace against the real server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install iproute2 openssl python3

# Everything is built before entering the namespace (it has no network).
cargo test -p seguro-embassy --all-features
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    cargo build -p seguro-embassy --release --target "$target"
done
cargo build -p seguro --bin seguro
cargo build -p seguro-embassy --features std --bin seguro-embassy-linux

bin="${CARGO_TARGET_DIR:-target}/debug"
ns="seguro-emb-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
timeout 300 python3 host-embassy/tests/tap_e2e.py "$ns" "$bin/seguro" "$bin/seguro-embassy-linux"
