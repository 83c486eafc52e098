#!/usr/bin/env bash
# Builds the release `seguro` for a Raspberry Pi as a static binary (musl libc inside, no
# glibc needed on the Pi), with cargo-zigbuild and zig as C compiler and linker:
#
#   cross/build.sh aarch64-unknown-linux-musl        # 64-bit Raspberry Pi OS (arm64)
#   cross/build.sh arm-unknown-linux-musleabihf      # 32-bit Raspberry Pi OS (armhf), every Pi:
#                                                    #   ARMv6 + VFPv2, the Pi 1, Zero, Zero W too
#   cross/build.sh armv7-unknown-linux-musleabihf    # 32-bit, ARMv7 and later only (Pi 2 on)
#
# Several targets may be given at once. The binary lands in
# $CARGO_TARGET_DIR (default target)/<target>/release/seguro; extra cargo arguments go after
# `--` (e.g. `-- --locked`).
#
# Needs rustup and, on PATH, cargo-zigbuild with zig (or Python's `ziglang` package):
#   python3 -m pip install -r cross/requirements.txt
# aarch64 uses rustup's prebuilt standard library (the target is in rust-toolchain.toml). The
# two 32-bit targets build the standard library from source (`-Zbuild-std`, with the pinned
# stable compiler, RUSTC_BOOTSTRAP=1 for that cargo command only): it needs the `rust-src`
# component, which this script adds, and no `rustup target add`. See cross/README.md.
set -euo pipefail

usage() {
    echo "usage: $0 TARGET... [-- CARGO-ARGS...]" >&2
    echo "  TARGET: aarch64-unknown-linux-musl, arm-unknown-linux-musleabihf," >&2
    echo "          armv7-unknown-linux-musleabihf" >&2
    exit 2
}
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift && break ;;
        aarch64-unknown-linux-musl | arm-unknown-linux-musleabihf | armv7-unknown-linux-musleabihf)
            targets+=("$1") && shift ;;
        *) usage ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || usage

cd "$(dirname "$0")/.."
if ! command -v cargo-zigbuild >/dev/null; then
    echo "error: cargo-zigbuild not found; install it and zig with" >&2
    echo "  python3 -m pip install -r cross/requirements.txt" >&2
    exit 1
fi

# One cargo command per kind, so that cargo builds the targets of a kind side by side.
prebuilt=() from_source=()
for t in "${targets[@]}"; do
    case "$t" in
        aarch64-*) prebuilt+=(--target "$t") ;;
        *) from_source+=(--target "$t") ;;
    esac
done
if [ ${#prebuilt[@]} -gt 0 ]; then
    for t in "${prebuilt[@]}"; do
        [ "$t" = --target ] && continue
        rustup target list --installed | grep -qx "$t" || rustup target add "$t"
    done
    cargo zigbuild -p seguro --release "${prebuilt[@]}" "$@"
fi
if [ ${#from_source[@]} -gt 0 ]; then
    rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
    RUSTC_BOOTSTRAP=1 cargo zigbuild -p seguro --release "${from_source[@]}" \
        -Zbuild-std=std,panic_unwind "$@"
fi
