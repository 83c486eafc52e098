#!/usr/bin/env bash
# Raspberry Pi: static (musl) release builds for aarch64, ARMv6 (every 32-bit Pi) and ARMv7
# with cargo-zigbuild and zig (cross/build.sh); their ELF attributes and C library (static, or
# glibc no newer than 2.31); each run under qemu-user on the oldest CPU it is meant for
# (ARM1176 for ARMv6, Cortex-A7 for ARMv7, Cortex-A53 for aarch64) with the end-to-end smoke
# test (the ARM server under qemu, two native clients); the arm64/armhf .deb (dpkg-deb
# --info/--contents, lintian when installed) and the systemd units (systemd-analyze verify and
# security). See cross/README.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install qemu-user binutils python3 python3-venv systemd

target_dir="${CARGO_TARGET_DIR:-target}"
a64=aarch64-unknown-linux-musl
v6=arm-unknown-linux-musleabihf
v7=armv7-unknown-linux-musleabihf
fail() {
    echo "error: $*" >&2
    exit 1
}

# cargo-zigbuild and zig, pinned, in a virtual environment kept in the target directory.
venv="$target_dir/cross-venv"
if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! cmp -s cross/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r cross/requirements.txt
    cp cross/requirements.txt "$venv/requirements.txt"
fi
export PATH="$PWD/$venv/bin:$PATH"
echo "cargo-zigbuild: $(cargo-zigbuild --version), zig $(python -m ziglang version)"

bash cross/build.sh "$a64" "$v6" "$v7" -- --locked
# The native client of the smoke test.
cargo build -p seguro --locked

version=$(cargo metadata --format-version 1 --no-deps --offline |
    python3 -c 'import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "seguro"))')

# qemu_for TARGET: the qemu-user command line for the oldest Pi CPU the build is meant for.
qemu_for() {
    case "$1" in
        "$a64") echo "qemu-aarch64 -cpu cortex-a53" ;; # Pi 3, Zero 2 W
        "$v7") echo "qemu-arm -cpu cortex-a7" ;;       # Pi 2
        "$v6") echo "qemu-arm -cpu arm1176" ;;         # Pi 1, Zero, Zero W
    esac
}

# check_libc BIN: a static binary (no interpreter, no dynamic section, no glibc symbol
# version), or else one whose newest glibc symbol version is at most 2.31 (bullseye).
check_libc() {
    local bin="$1" dynamic program versions glibc
    dynamic=$(LC_ALL=C readelf -d "$bin")
    program=$(LC_ALL=C readelf -lW "$bin")
    versions=$(LC_ALL=C readelf -V --wide "$bin")
    glibc=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$versions" | sed 's/GLIBC_//' | sort -uV |
        tail -n 1) || true
    if grep -q 'INTERP' <<<"$program" || grep -q 'NEEDED' <<<"$dynamic"; then
        [ -n "$glibc" ] || fail "$bin is dynamic but names no glibc version"
        [ "$(printf '%s\n' "$glibc" 2.31 | sort -V | tail -n 1)" = 2.31 ] ||
            fail "$bin needs glibc $glibc, newer than 2.31 (Raspberry Pi OS bullseye)"
        echo "$bin: dynamic, newest glibc symbol version $glibc (<= 2.31)"
    else
        [ -z "$glibc" ] || fail "$bin is static but carries glibc $glibc symbol versions"
        grep -q 'no dynamic section' <<<"$dynamic" || fail "$bin: static, yet has a dynamic section"
        echo "$bin: static, no interpreter, no dynamic section, no glibc symbol version"
    fi
}

# check_arm_attributes TARGET BIN: the ARM build attributes match the target's CPU and ABI.
check_arm_attributes() {
    local t="$1" bin="$2" attrs
    attrs=$(LC_ALL=C readelf -A "$bin")
    grep -E 'Tag_(CPU_arch|ARM_ISA|THUMB_ISA|FP_arch|Advanced_SIMD|ABI_VFP)' <<<"$attrs"
    grep -q 'Tag_ABI_VFP_args: VFP registers' <<<"$attrs" ||
        fail "$bin: not the hard-float ABI (armhf)"
    case "$t" in
        "$v6")
            grep -Eq 'Tag_CPU_arch: v6(KZ|K|Z)?$' <<<"$attrs" || fail "$bin: not ARMv6"
            grep -q 'Tag_FP_arch: VFPv2$' <<<"$attrs" || fail "$bin: not VFPv2"
            if grep -q 'Tag_THUMB_ISA_use: Thumb-2' <<<"$attrs"; then
                fail "$bin: uses Thumb-2, which ARMv6 lacks"
            fi
            # Instructions a compiler emits for ARMv7 (constants, barriers) and ARMv6 lacks, and
            # registers VFPv2 lacks (NEON's q0-q15, VFPv3-D32's d16-d31): any of them means an
            # object was built for a newer CPU. (The ARMv7 build has thousands of the former.)
            local dis v7only simd
            dis=$(llvm_objdump -d --no-show-raw-insn "$bin")
            v7only=$(grep -cE $'\t(movw|movt|dmb|dsb|isb|ubfx|sbfx|bfi|bfc|rbit|sdiv|udiv)\\b' <<<"$dis" || true)
            simd=$(grep -cE $'\tv[a-z0-9.]+\t.*\\b(q[0-9]+|d(1[6-9]|2[0-9]|3[01]))\\b' <<<"$dis" || true)
            echo "$bin: $v7only ARMv7-only instructions (movw, movt, dmb, ubfx, ...), $simd uses of NEON or d16-d31"
            [ "$v7only" -eq 0 ] || fail "$bin has ARMv7-only instructions"
            [ "$simd" -eq 0 ] || fail "$bin uses registers VFPv2 lacks"
            ;;
        "$v7")
            grep -Eq 'Tag_CPU_arch: v7$' <<<"$attrs" || fail "$bin: not ARMv7"
            ;;
    esac
}
llvm_objdump() {
    "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objdump" "$@"
}

for t in "$a64" "$v6" "$v7"; do
    bin="$target_dir/$t/release/seguro"
    echo "--- $t: $(stat -c %s "$bin") bytes"
    check_libc "$bin"
    [ "$t" = "$a64" ] || check_arm_attributes "$t" "$bin"
    run="$(qemu_for "$t") $bin"
    out=$($run --version)
    echo "$run --version: $out"
    [ "$out" = "seguro $version" ] || fail "expected 'seguro $version'"
    # End to end: the server cross-compiled for the Pi under qemu-user, native clients.
    python3 cross/smoke.py --server "$run" --client "$target_dir/debug/seguro"
done

# Debian packages: arm64, and armhf from the ARMv6 build (one package for every 32-bit Pi).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "$a64" "$v6"; do
    case "$t" in
        "$a64") arch=arm64 ;;
        *) arch=armhf ;;
    esac
    deb=$(OUT_DIR="$work/deb" bash cross/make-deb.sh "$t")
    [ "$arch" = arm64 ] && deb64="$deb"
    dpkg-deb --info "$deb"
    dpkg-deb --contents "$deb" | tee "$work/contents-$arch"
    [ "$(dpkg-deb --field "$deb" Package)" = seguro ] || fail "$deb: Package"
    [ "$(dpkg-deb --field "$deb" Architecture)" = "$arch" ] || fail "$deb: Architecture"
    [ "$(dpkg-deb --field "$deb" Version)" = "$version-1" ] || fail "$deb: Version"
    # A static binary depends on no C library.
    depends=$(dpkg-deb --field "$deb" Depends)
    [ "$depends" = "adduser, init-system-helpers (>= 1.52)" ] || fail "$deb: Depends: $depends"
    for f in ./usr/bin/seguro ./lib/systemd/system/seguro.service \
        ./lib/systemd/system/seguro-ngrok.service ./etc/default/seguro ./etc/seguro/ngrok.yml \
        ./usr/share/doc/seguro/README.md ./usr/share/doc/seguro/copyright; do
        grep -q " $f\$" "$work/contents-$arch" || fail "$deb lacks $f"
    done
    grep -q -- '-rw------- root/root .* ./etc/seguro/ngrok.yml$' "$work/contents-$arch" ||
        fail "$deb: /etc/seguro/ngrok.yml is not root's only"
    # The packaged binary is the one built, stripped, static, and still runs on the oldest CPU.
    rm -rf "$work/x" && dpkg-deb -x "$deb" "$work/x" && dpkg-deb -e "$deb" "$work/x/DEBIAN"
    packaged="$work/x/usr/bin/seguro"
    sections=$(LC_ALL=C readelf -SW "$packaged")
    if grep -q '\.symtab' <<<"$sections"; then fail "$deb: binary not stripped"; fi
    check_libc "$packaged"
    out=$($(qemu_for "$t") "$packaged" --version)
    [ "$out" = "seguro $version" ] || fail "packaged binary: $out"
    echo "$deb: $(stat -c %s "$deb") bytes, binary $(stat -c %s "$packaged") bytes"
    for s in postinst prerm postrm; do
        sh -n "$work/x/DEBIAN/$s" || fail "$deb: $s is not valid sh"
    done
    grep -q 'adduser --system' "$work/x/DEBIAN/postinst" || fail "postinst creates no user"
    grep -q 'deb-systemd-helper enable seguro.service' "$work/x/DEBIAN/postinst" ||
        fail "postinst does not enable seguro.service"
    if command -v lintian >/dev/null; then
        lintian --fail-on error,warning "$deb"
    else
        echo "lintian not installed: skipped (apt-get install lintian to run it)"
    fi
done

# Optional (downloads a Debian base system, ~2 min): install, upgrade, remove and purge the
# package for real in a chroot; an amd64 package of the native binary stands in for the Pi's.
if [ "${SEGURO_DEB_INSTALL_TEST:-0}" = 1 ]; then
    apt_install debootstrap
    pc_deb=$(SEGURO_BIN="$target_dir/debug/seguro" OUT_DIR="$work/deb" \
        bash cross/make-deb.sh x86_64-unknown-linux-gnu)
    bash cross/deb-install-test.sh "$pc_deb"
fi

# The units as packaged: syntax, references and hardening, in a root holding systemd's own
# units (for the targets they refer to) and the arm64 package. `verify` only checks that the
# commands exist, so an empty executable stands in for the ngrok agent (not packaged).
root="$work/root"
mkdir -p "$root/lib/systemd/system" "$root/usr/local/bin"
cp -r /lib/systemd/system/. "$root/lib/systemd/system/"
dpkg-deb -x "$deb64" "$root"
install -m 0755 /dev/null "$root/usr/local/bin/ngrok"
units=(/lib/systemd/system/seguro.service /lib/systemd/system/seguro-ngrok.service)
verify=$(systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1) || true
if [ -n "$verify" ]; then
    echo "$verify"
    fail "systemd-analyze verify found problems in the units"
fi
echo "systemd-analyze verify: both units clean"
for u in "${units[@]}"; do
    # Exposure 0.0 (locked down) .. 10.0 (unprotected); fail above 2.0.
    systemd-analyze security --offline=yes --threshold=20 --root="$root" "$u" |
        grep 'Overall exposure'
done
