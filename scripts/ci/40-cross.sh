#!/usr/bin/env bash
# Raspberry Pi: release builds for aarch64 and armv7 with Debian's cross compilers, both run
# under qemu-user, the end-to-end smoke test (the ARM server under qemu, two native clients),
# the arm64/armhf .deb (dpkg-deb --info/--contents, lintian when installed) and the systemd
# units (systemd-analyze verify and security). See cross/README.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross \
    libc6-dev-armhf-cross qemu-user python3 systemd

target_dir="${CARGO_TARGET_DIR:-target}"
a64=aarch64-unknown-linux-gnu
a32=armv7-unknown-linux-gnueabihf
bin64="$target_dir/$a64/release/seguro"
bin32="$target_dir/$a32/release/seguro"
qemu64=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
qemu32=(qemu-arm -L /usr/arm-linux-gnueabihf)
fail() {
    echo "error: $*" >&2
    exit 1
}

for t in "$a64" "$a32"; do
    cargo build -p seguro --release --target "$t"
done
# The native client of the smoke test.
cargo build -p seguro

version=$(cargo metadata --format-version 1 --no-deps --offline |
    python3 -c 'import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "seguro"))')
for run in "${qemu64[*]} $bin64" "${qemu32[*]} $bin32"; do
    out=$($run --version)
    echo "$run --version: $out"
    [ "$out" = "seguro $version" ] || fail "expected 'seguro $version'"
done

# End to end: the server cross-compiled for aarch64 (and armv7) under qemu-user.
python3 cross/smoke.py --server "${qemu64[*]} $bin64" --client "$target_dir/debug/seguro"
python3 cross/smoke.py --server "${qemu32[*]} $bin32" --client "$target_dir/debug/seguro"

# Debian packages.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "$a64" "$a32"; do
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
    dpkg-deb --field "$deb" Depends | grep -Eq '^libc6 \(>= 2\.[0-9]+\), libgcc-s1, adduser' ||
        fail "$deb: Depends"
    for f in ./usr/bin/seguro ./lib/systemd/system/seguro.service \
        ./lib/systemd/system/seguro-ngrok.service ./etc/default/seguro ./etc/seguro/ngrok.yml \
        ./usr/share/doc/seguro/README.md ./usr/share/doc/seguro/copyright; do
        grep -q " $f\$" "$work/contents-$arch" || fail "$deb lacks $f"
    done
    grep -q -- '-rw------- root/root .* ./etc/seguro/ngrok.yml$' "$work/contents-$arch" ||
        fail "$deb: /etc/seguro/ngrok.yml is not root's only"
    # The packaged binary is the one built, stripped, and still runs.
    rm -rf "$work/x" && dpkg-deb -x "$deb" "$work/x" && dpkg-deb -e "$deb" "$work/x/DEBIAN"
    if [ "$arch" = arm64 ]; then
        out=$("${qemu64[@]}" "$work/x/usr/bin/seguro" --version)
    else
        out=$("${qemu32[@]}" "$work/x/usr/bin/seguro" --version)
    fi
    [ "$out" = "seguro $version" ] || fail "packaged binary: $out"
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
