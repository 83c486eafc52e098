#!/usr/bin/env bash
# Board firmwares: the release ELF of every board (Nucleo-F767ZI, Pico W, Pico 2 W,
# ESP32-C3), built with throwaway settings and an invite for a throwaway P-256 key, then
# held to a size budget: flash (text + rodata + data) at most 50% of the chip's flash,
# static RAM (data + bss, plus code run from RAM) at most 60% of its RAM.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPO="$(pwd)"
start=$SECONDS

# One target directory for all boards, inside the repository's target/: boards on the
# same target share their compiled dependencies.
export CARGO_TARGET_DIR="$REPO/target/boards"
# No debug info in CI: it does not change what is flashed (the sizes checked here), only
# the time to build.
export CARGO_PROFILE_RELEASE_DEBUG=false
SYSROOT="$(rustc --print sysroot)"
LLVM_SIZE="$SYSROOT/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-size"
if [ ! -x "$LLVM_SIZE" ]; then
    rustup component add llvm-tools
fi
command -v openssl >/dev/null || apt_install openssl
command -v python3 >/dev/null || apt_install python3

# The build-time settings: dummy values, and an invite for a P-256 key made for this run,
# by make_invite.py (written from docs/invite.md independently of the Rust code, which
# the build scripts parse it with).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/server.key" -out "$work/server.crt" -days 2 -subj "/CN=seguro-ci" 2>/dev/null
make_invite() { python3 boards/build-support/make_invite.py "$@"; }
export SEGURO_WIFI_SSID="seguro-ci"
export SEGURO_WIFI_PASSWORD="not-a-real-password"
export SEGURO_USER="ci-board"
SEGURO_INVITE="$(make_invite "$work/server.crt" 0.tcp.eu.ngrok.io:12345)"
export SEGURO_INVITE
unset SEGURO_SERVER SEGURO_CERT

# The board crates are outside the workspace: their formatting is checked here.
for crate in build-support common nucleo-f767zi pico-w esp32c3; do
    cargo fmt --manifest-path "boards/$crate/Cargo.toml" -- --check
done

# Host-side unit tests of the build support (PEM from real openssl certificates,
# settings) and the shared board code (the console line editor).
t=$SECONDS
cargo test --manifest-path boards/build-support/Cargo.toml --quiet
cargo test --manifest-path boards/common/Cargo.toml --quiet
echo "host tests in $((SECONDS - t)) s"

# An RSA certificate must stop the build with a clear message (the build script runs
# before the firmware is compiled, so this is cheap once dependencies are built).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/rsa.key" -out "$work/rsa.crt" \
    -days 2 -subj "/CN=seguro-ci-rsa" 2>/dev/null

failed=0
# check NAME ELF FLASH_KIB RAM_KIB: prints the sizes and holds them to the budget.
check() {
    local name="$1" elf="$2" flash_kib="$3" ram_kib="$4"
    # From the section list (`llvm-size -A`: name, size, address), leaving out what is
    # not in the image (address 0: debug info, defmt's table) and the linker's
    # placeholders (the ESP32-C3 `*_dummy` sections, the `.stack` that takes the rest
    # of RAM):
    #   flash: every section stored in flash: code, read-only data, vectors and boot
    #          blocks, and the initial values of .data and of code run from RAM;
    #   RAM:   .data, .bss, .uninit/.noinit, code run from RAM (ESP32-C3 .trap and
    #          .rwtext in IRAM, which is the same SRAM), and RAM taken from the boot
    #          loader's area (.dram2_uninit, the ESP32-C3 heap).
    local sizes flash ram
    sizes=$("$LLVM_SIZE" -A -d "$elf" | awk '
        NR > 2 && NF == 3 && $3 != 0 && $1 !~ /dummy/ && $1 != ".stack" {
            nobits = ($1 ~ /^\.(bss|uninit|noinit|dram2_uninit)/ || $1 ~ /\.bss$/)
            inram = nobits || $1 ~ /^\.(data|rwtext|trap|rtc_fast)/
            if (!nobits) flash += $2
            if (inram) ram += $2
        }
        END { print flash + 0, ram + 0 }')
    read -r flash ram <<<"$sizes"
    local flash_max=$((flash_kib * 1024 / 2)) ram_max=$((ram_kib * 1024 * 6 / 10))
    awk -v n="$name" -v f="$flash" -v fk="$flash_kib" -v r="$ram" -v rk="$ram_kib" 'BEGIN {
        printf "%-14s flash %7d B (%4.1f%% of %d KiB)   static RAM %7d B (%4.1f%% of %d KiB)\n",
            n, f, f * 100 / (fk * 1024), fk, r, r * 100 / (rk * 1024), rk }'
    if [ "$flash" -gt "$flash_max" ]; then
        echo "error: $name uses more than 50% of its flash" >&2
        failed=1
    fi
    if [ "$ram" -gt "$ram_max" ]; then
        echo "error: $name uses more than 60% of its RAM" >&2
        failed=1
    fi
}

build() {
    local dir="$1"
    shift
    local t=$SECONDS
    (cd "boards/$dir" && cargo build --release "$@")
    echo "built $dir $* in $((SECONDS - t)) s"
}

build nucleo-f767zi
build pico-w
build pico-w --no-default-features --features rp2350 --target thumbv8m.main-none-eabihf
build esp32c3

echo "firmware sizes (budget: flash <= 50%, static RAM <= 60%):"
check nucleo-f767zi "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/seguro-nucleo-f767zi" 2048 512
check pico-w "$CARGO_TARGET_DIR/thumbv6m-none-eabi/release/seguro-pico-w" 2048 264
check pico-2-w "$CARGO_TARGET_DIR/thumbv8m.main-none-eabihf/release/seguro-pico-w" 4096 520
check esp32c3 "$CARGO_TARGET_DIR/riscv32imc-unknown-none-elf/release/seguro-esp32c3" 4096 400
# refused NAME LOG_TEXT VAR=VALUE...: the F767ZI build must stop, saying LOG_TEXT.
refused() {
    local name="$1" text="$2"
    shift 2
    if (cd boards/nucleo-f767zi && env "$@" cargo build --release) >"$work/$name.log" 2>&1; then
        echo "error: the F767ZI firmware built with $name" >&2
        exit 1
    fi
    grep -q "$text" "$work/$name.log" || {
        cat "$work/$name.log" >&2
        echo "error: the refusal of $name did not explain itself" >&2
        exit 1
    }
    echo "$name is refused at build time"
}
refused "an invite for an RSA key" "pins an RSA key; the boards need a P-256 one" \
    SEGURO_INVITE="$(make_invite "$work/rsa.crt" 0.tcp.eu.ngrok.io:12345)"
refused "a mistyped invite" "the invite's check does not match" \
    SEGURO_INVITE="${SEGURO_INVITE/ngrok/ngrak}"
refused "an RSA certificate" "RSA certificate; the boards need a P-256 one" \
    SEGURO_INVITE= SEGURO_CERT="$work/rsa.crt"
# The certificate file instead of an invite still works.
t=$SECONDS
(cd boards/nucleo-f767zi && SEGURO_INVITE= SEGURO_CERT="$work/server.crt" \
    SEGURO_SERVER=0.tcp.eu.ngrok.io:12345 cargo build --release)
echo "built nucleo-f767zi from SEGURO_CERT in $((SECONDS - t)) s"
check nucleo-f767zi-cert "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/seguro-nucleo-f767zi" 2048 512
echo "boards: $((SECONDS - start)) s"
exit $failed
