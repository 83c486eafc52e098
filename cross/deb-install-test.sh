#!/usr/bin/env bash
# Installs the Seguro package for real, in a throw-away Debian chroot (debootstrap; root and
# access to Debian's package archive needed), and checks what the maintainer scripts do:
#   install  -> user and group `seguro`, seguro.service enabled (seguro-ngrok.service not),
#               conffiles registered; then the unit's command, run as `seguro` in a state
#               directory as systemd would, generates server.crt/server.key (key 0600);
#   reinstall (upgrade path) -> still enabled;
#   remove   -> units masked, certificate kept;  purge -> state, conffiles and masks gone.
# systemd itself does not run in the chroot (the units are checked by systemd-analyze in
# scripts/ci/40-cross.sh).
#
#   cross/deb-install-test.sh path/to/seguro_<v>-1_<arch>.deb
#
# The package must be for this machine's architecture (make one with
# `SEGURO_BIN=target/debug/seguro cross/make-deb.sh x86_64-unknown-linux-gnu`).
# DEB_CHROOT keeps and reuses a chroot (default: a new temporary one, removed at the end).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 package.deb" >&2
    exit 2
fi
deb="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[ "$(dpkg-deb --field "$deb" Architecture)" = "$(dpkg --print-architecture)" ] ||
    { echo "error: $deb is not for $(dpkg --print-architecture)" >&2; exit 2; }
command -v debootstrap >/dev/null || {
    echo "error: debootstrap not installed (apt-get install debootstrap)" >&2
    exit 1
}

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

keep="${DEB_CHROOT:-}"
root="${DEB_CHROOT:-$(mktemp -d /tmp/seguro-chroot.XXXXXX)}"
cleanup() {
    mountpoint -q "$root/proc" && umount "$root/proc"
    [ -n "$keep" ] || rm -rf "$root"
}
trap cleanup EXIT

chmod 0755 "$root" # the chroot's / (mktemp makes it 0700)
if [ ! -x "$root/usr/bin/apt-get" ]; then
    debootstrap --variant=minbase stable "$root" >"$root.debootstrap.log" 2>&1 ||
        { tail -n 20 "$root.debootstrap.log"; fail "debootstrap"; }
    rm -f "$root.debootstrap.log"
fi
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive sh -c "$1"; }

cp "$deb" "$root/tmp/seguro.deb"
in_root 'apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/seguro.deb' \
    >"$root/tmp/install.log" 2>&1 || { cat "$root/tmp/install.log"; fail "installation"; }
echo "ok: installed"

in_root 'getent passwd seguro' | grep -q ':/var/lib/seguro:/usr/sbin/nologin$' ||
    fail "system user seguro"
in_root 'getent group seguro' >/dev/null || fail "group seguro"
echo "ok: user and group seguro"
[ -L "$root/etc/systemd/system/multi-user.target.wants/seguro.service" ] ||
    fail "seguro.service not enabled"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/seguro-ngrok.service" ] ||
    fail "seguro-ngrok.service enabled without an authtoken"
echo "ok: seguro.service enabled, seguro-ngrok.service not"
grep -qx /etc/default/seguro "$root/var/lib/dpkg/info/seguro.conffiles" || fail "conffiles"
echo "ok: conffiles"

# What systemd does at start: StateDirectory=, User=, UMask=, WorkingDirectory=,
# EnvironmentFile=, then ExecStart= (on a free port rather than 5000), stopped by SIGTERM.
# shellcheck disable=SC2016 # expanded inside the chroot
in_root 'install -d -o seguro -g seguro -m 0750 /var/lib/seguro && cd /var/lib/seguro &&
    set -a && . /etc/default/seguro && set +a && [ "$SEGURO_BIND" = 127.0.0.1:5000 ] &&
    umask 0077 && timeout -s TERM 5 setpriv --reuid seguro --regid seguro --init-groups \
    /usr/bin/seguro serve --bind 127.0.0.1:0 --cert server.crt --key server.key $SEGURO_ARGS;
    [ $? -eq 124 ]' >"$root/tmp/serve.log" 2>&1 || { cat "$root/tmp/serve.log"; fail "serve"; }
grep -q 'listening on 127.0.0.1:' "$root/tmp/serve.log" || fail "server did not listen"
key=$(in_root 'stat -c "%U %a" /var/lib/seguro/server.key')
[ "$key" = "seguro 600" ] || fail "server.key: $key"
[ "$(in_root 'stat -c %U /var/lib/seguro/server.crt')" = seguro ] || fail "server.crt owner"
echo "ok: the service's command generates its certificate and key as seguro"

in_root 'apt-get install -y -qq --reinstall /tmp/seguro.deb' >/dev/null 2>&1 || fail "reinstall"
[ -L "$root/etc/systemd/system/multi-user.target.wants/seguro.service" ] ||
    fail "not enabled after reinstall"
echo "ok: reinstall keeps it enabled"

in_root 'apt-get remove -y -qq seguro' >/dev/null 2>&1 || fail "remove"
[ "$(readlink "$root/etc/systemd/system/seguro.service")" = /dev/null ] || fail "not masked"
[ -f "$root/var/lib/seguro/server.key" ] || fail "remove deleted the key"
echo "ok: remove masks the units and keeps the certificate"

in_root 'apt-get purge -y -qq seguro' >/dev/null 2>&1 || fail "purge"
for f in /var/lib/seguro /etc/seguro /etc/default/seguro /etc/systemd/system/seguro.service \
    /etc/systemd/system/multi-user.target.wants/seguro.service; do
    if [ -e "$root$f" ] || [ -L "$root$f" ]; then
        fail "purge left $f"
    fi
done
echo "ok: purge removes state, configuration and masks"
echo "deb-install-test: 8 passed, 0 failed"
