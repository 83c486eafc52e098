#!/usr/bin/env bash
# Builds the Debian package of the Seguro server for a Raspberry Pi from an already
# cross-compiled release binary:
#
#   cross/make-deb.sh aarch64-unknown-linux-musl       # -> seguro_<version>-1_arm64.deb (64-bit Pi OS)
#   cross/make-deb.sh arm-unknown-linux-musleabihf     # -> seguro_<version>-1_armhf.deb (32-bit Pi OS,
#                                                      #    ARMv6: every Pi, the Zero and Pi 1 too)
#   cross/make-deb.sh armv7-unknown-linux-musleabihf   # -> seguro_<version>-1_armhf.deb (ARMv7 only)
#   cross/make-deb.sh x86_64-unknown-linux-gnu         # -> seguro_<version>-1_amd64.deb (a PC)
#
# The binary is $CARGO_TARGET_DIR (default target)/<target>/release/seguro, as made by
# cross/build.sh <target>; SEGURO_BIN overrides it. The package lands in $OUT_DIR (default
# target/deb). Maintainer: $DEBFULLNAME <$DEBEMAIL>.
#
# The package installs /usr/bin/seguro, the services seguro.service (enabled and started on
# installation: it runs as the system user `seguro`, created by postinst, and generates
# /var/lib/seguro/server.crt and server.key on its first start) and seguro-ngrok.service (not
# enabled: it needs an ngrok authtoken in /etc/seguro/ngrok.yml), /etc/default/seguro, and the
# guide in /usr/share/doc/seguro/README.md. Its Depends come from the binary: a static one
# (the Pi builds) needs no libc6.
set -euo pipefail

usage() {
    echo "usage: $0 aarch64-unknown-linux-musl|arm-unknown-linux-musleabihf|armv7-unknown-linux-musleabihf|x86_64-unknown-linux-gnu" >&2
    exit 2
}
[ $# -eq 1 ] || usage
target="$1"
case "$target" in
    aarch64-unknown-linux-musl) arch=arm64 ;;
    arm-unknown-linux-musleabihf | armv7-unknown-linux-musleabihf) arch=armhf ;;
    x86_64-unknown-linux-gnu | x86_64-unknown-linux-musl) arch=amd64 ;; # a PC as the server
    *) usage ;;
esac

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-target}"
bin="${SEGURO_BIN:-$target_dir/$target/release/seguro}"
out_dir="${OUT_DIR:-target/deb}"
if [ ! -x "$bin" ]; then
    echo "error: $bin not found; build it first:" >&2
    echo "  cross/build.sh $target" >&2
    exit 1
fi

# The ELF machine must match the package's architecture (e_machine: 183 aarch64, 40 arm,
# 62 x86-64).
machine=$(od -An -t u2 -j 18 -N 2 "$bin" | tr -d ' ')
case "$arch:$machine" in
    arm64:183 | armhf:40 | amd64:62) ;;
    *)
        echo "error: $bin is not a $arch binary (ELF machine $machine)" >&2
        exit 1
        ;;
esac

version=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "seguro":
        print(p["version"])')
[ -n "$version" ] || { echo "error: cannot read the version of package seguro" >&2; exit 1; }
debversion="$version-1"
maintainer="${DEBFULLNAME:-Seguro developers} <${DEBEMAIL:-seguro@example.org}>"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 022
root="$stage/root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
    "$root/etc/seguro" "$root/usr/share/doc/seguro"

# The binary, stripped like Debian's own packages, with the llvm-objcopy that ships with
# rustc (it handles every architecture).
objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy"
[ -x "$objcopy" ] || { echo "error: $objcopy not found" >&2; exit 1; }
"$objcopy" --strip-all --remove-section=.comment --remove-section=.note "$bin" \
    "$root/usr/bin/seguro"
chmod 0755 "$root/usr/bin/seguro"

install -m 0644 cross/seguro.service cross/seguro-ngrok.service "$root/lib/systemd/system/"
install -m 0600 cross/ngrok.yml "$root/etc/seguro/ngrok.yml"
cat >"$root/etc/default/seguro" <<'EOF'
# Settings of seguro.service (see /usr/share/doc/seguro/README.md); after a change:
#   sudo systemctl restart seguro
#
# Where the server listens. 127.0.0.1:5000: only through the tunnel of seguro-ngrok.service
# (`ngrok tcp 5000`) on this machine. 0.0.0.0:5000: the local network too.
SEGURO_BIND=127.0.0.1:5000
# More `seguro serve` options, e.g. "--max-connections 64 --rate 20" (see `seguro serve --help`).
SEGURO_ARGS=
EOF
chmod 0644 "$root/etc/default/seguro"

doc="$root/usr/share/doc/seguro"
install -m 0644 cross/README.md "$doc/README.md"
install -m 0644 cross/ngrok.yml "$doc/ngrok.yml.example"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: seguro"
    echo
    echo "Files: *"
    echo "Copyright: $(grep -m1 '^Copyright' LICENSE-MIT | sed 's/^Copyright (c) //')"
    echo "License: Expat"
    echo
    echo "License: Expat"
    sed -n '/^Permission/,$p' LICENSE-MIT | sed 's/^$/./; s/^/ /'
} >"$doc/copyright"
chmod 0644 "$doc/copyright"
{
    echo "seguro ($debversion) unstable; urgency=medium"
    echo
    echo "  * Package of seguro $version for the Raspberry Pi ($arch)."
    echo
    echo " -- $maintainer  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Deliberate choices lintian would warn about.
mkdir -p "$root/usr/share/lintian/overrides"
cat >"$root/usr/share/lintian/overrides/seguro" <<'EOF'
# Holds the ngrok authtoken: root only.
seguro: non-standard-file-perm 0600 != 0644 [etc/seguro/ngrok.yml]
# `seguro --help` and `seguro <command> --help` document every option.
seguro: no-manual-page [usr/bin/seguro]
# Built for Raspberry Pi users, not uploaded to Debian.
seguro: initial-upload-closes-no-bugs [usr/share/doc/seguro/changelog.Debian.gz:1]
EOF
chmod 0644 "$root/usr/share/lintian/overrides/seguro"

# Dependencies from the libraries the binary links and the newest glibc symbol it uses.
needed=$(LC_ALL=C readelf -d "$root/usr/bin/seguro" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
depends=()
glibc_needed=""
for lib in $needed; do
    case "$lib" in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) glibc_needed=1 ;;
        libgcc_s.so.1) depends+=("libgcc-s1") ;;
        *)
            echo "error: $bin needs $lib, which this script does not map to a package" >&2
            exit 1
            ;;
    esac
done
if [ -n "$glibc_needed" ]; then
    glibc=$(LC_ALL=C readelf -V --wide "$root/usr/bin/seguro" | grep -o 'GLIBC_[0-9][0-9.]*' |
        sed 's/GLIBC_//' | sort -uV | tail -n 1)
    depends=("libc6 (>= ${glibc:-2.17})" "${depends[@]}")
fi
if [ -z "$needed" ]; then
    cat >>"$root/usr/share/lintian/overrides/seguro" <<'EOF'
# Static on purpose (musl inside): runs on every Raspberry Pi OS release whatever its glibc.
seguro: statically-linked-binary [usr/bin/seguro]
EOF
fi
depends+=("adduser" "init-system-helpers (>= 1.52)")
printf -v depends_line '%s, ' "${depends[@]}"
depends_line="${depends_line%, }"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: seguro
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends_line
Suggests: ngrok
Section: net
Priority: optional
Description: secure chat relay server with end-to-end encryption
 Seguro is a small chat system: a TLS relay server and clients that encrypt
 messages end to end (X25519, AES-256-GCM) and pin the server's certificate,
 so that the chat works through a TCP tunnel such as ngrok.
 .
 This package runs the server as the system service seguro.service, under
 its own user, with its certificate and key in /var/lib/seguro (generated on
 first start), and ships seguro-ngrok.service to publish it with ngrok.
EOF

printf '%s\n' /etc/default/seguro /etc/seguro/ngrok.yml >"$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Creates the system user, then enables and starts seguro.service (restarts it on upgrades).
set -e

if [ "$1" = configure ] && ! getent passwd seguro >/dev/null; then
    adduser --system --group --quiet --home /var/lib/seguro --no-create-home seguro
fi

case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
    deb-systemd-helper unmask seguro.service >/dev/null || true
    # "was-enabled" is true on a first installation, and keeps an administrator's
    # `systemctl disable` across upgrades.
    if deb-systemd-helper --quiet was-enabled seguro.service; then
        deb-systemd-helper enable seguro.service >/dev/null || true
    else
        deb-systemd-helper update-state seguro.service >/dev/null || true
    fi
    # The tunnel needs an authtoken first: never enabled here, only its state is tracked.
    deb-systemd-helper update-state seguro-ngrok.service >/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            # Not the tunnel: restarting the agent would change its public address.
            deb-systemd-invoke restart seguro.service >/dev/null || true
        else
            deb-systemd-invoke start seguro.service >/dev/null || true
        fi
    fi
    if [ "$1" = configure ] && [ -z "$2" ]; then
        echo "seguro: the server listens on 127.0.0.1:5000 (settings: /etc/default/seguro)"
        echo "seguro: its certificate's fingerprint: journalctl -u seguro | grep SHA-256"
        echo "seguro: to publish it with ngrok see /usr/share/doc/seguro/README.md"
    fi
    ;;
esac
exit 0
EOF

cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Stops the services before the package is removed (an upgrade restarts them in postinst).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop seguro-ngrok.service seguro.service >/dev/null || true
fi
exit 0
EOF

cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# remove: forgets the units. purge: also deletes the server's certificate and key
# (/var/lib/seguro) and the tunnel's state; the user `seguro` stays, as is usual in Debian.
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if command -v deb-systemd-helper >/dev/null; then
    case "$1" in
    remove)
        deb-systemd-helper mask seguro.service seguro-ngrok.service >/dev/null || true
        ;;
    purge)
        deb-systemd-helper purge seguro.service seguro-ngrok.service >/dev/null || true
        deb-systemd-helper unmask seguro.service seguro-ngrok.service >/dev/null || true
        ;;
    esac
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/seguro /var/lib/private/seguro-ngrok /var/lib/seguro-ngrok
fi
exit 0
EOF

chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out_dir"
deb="$out_dir/seguro_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
