#!/usr/bin/env bash
# seguro-embassy: unit and pinning tests (including the guard against certificate-less
# handshakes), builds for two microcontroller targets, and the end-to-end test of the
# Linux runner over a TAP device in a network namespace against the real server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install iproute2 openssl python3

# Everything is built before entering the namespace (it has no network).
cargo test -p seguro-embassy --all-features
# No atomics, no std, no allocator: the library alone for a Cortex-M0+.
cargo build -p seguro-embassy --release --target thumbv6m-none-eabi
# The flash store links into a firmware for a Cortex-M0+ and a RISC-V (ESP32-C3) core;
# its size is printed (host-embassy/store-probe/README.md has the figures).
store_probe_dir="${CARGO_TARGET_DIR:-$PWD/target}/store-probe"
for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    (cd host-embassy/store-probe && cargo build --release --target "$target" --target-dir "$store_probe_dir")
done
# A whole firmware for a Cortex-M4F (executor, embassy-net, the client with default
# buffers) must link; its flash and static RAM are printed.
probe_dir="${CARGO_TARGET_DIR:-$PWD/target}/size-probe"
(cd host-embassy/size-probe && cargo build --release --target-dir "$probe_dir")
llvm_size="$(find "$(rustc --print sysroot)/lib/rustlib" -name llvm-size -type f | head -n 1)"
if [ -n "$llvm_size" ]; then
    "$llvm_size" "$probe_dir/thumbv7em-none-eabihf/release/seguro-embassy-size-probe"
    for target in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
        "$llvm_size" "$store_probe_dir/$target/release/seguro-store-probe"
    done
fi
cargo build -p seguro --bin seguro
cargo build -p seguro-embassy --features std --bin seguro-embassy-linux

bin="${CARGO_TARGET_DIR:-target}/debug"
ns="seguro-emb-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
timeout 300 python3 host-embassy/tests/tap_e2e.py "$ns" "$bin/seguro" "$bin/seguro-embassy-linux"
