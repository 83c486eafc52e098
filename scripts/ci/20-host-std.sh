#!/usr/bin/env bash
# host-std: the `seguro` binary's tests with real processes, sockets and TLS, then the
# interop tests against an independent Python peer (ssl + pyca/cryptography), in both roles,
# and the lying-server tests (host-std/tests/python/lying_proxy.py, a TLS proxy holding the
# server's key that replays and reflects relays, in front of `seguro serve` and of the
# Python reference server): both run by `unittest discover` below.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# The tests make the reference's RSA pair with the openssl CLI, and run Python.
command -v openssl >/dev/null || apt_install openssl
command -v python3 >/dev/null || apt_install python3
# tests/tui_tmux.rs drives the full-screen client in a real terminal.
command -v tmux >/dev/null || apt_install tmux
export SEGURO_REQUIRE_TMUX=1

# A Python that has pyca/cryptography: pip first, then Debian's package.
PY=""
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import cryptography' 2>/dev/null; then
        PY="$cand"
        break
    fi
done
if [ -z "$PY" ]; then
    python3 -m pip install --quiet cryptography 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages cryptography 2>/dev/null \
        || apt_install python3-cryptography
    for cand in python3 /usr/bin/python3; do
        if command -v "$cand" >/dev/null && "$cand" -c 'import cryptography' 2>/dev/null; then
            PY="$cand"
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "error: no python3 with the cryptography package" >&2
    exit 1
fi

cargo test -p seguro

SEGURO_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/seguro" "$PY" -m unittest discover -s host-std/tests/python -v
