#!/usr/bin/env bash
# Soak and fault suite (bounded, about a minute): a real `seguro serve` process on
# loopback, real TLS, 24 healthy clients exchanging sequence-numbered end-to-end
# encrypted messages while misbehaving clients come and go (disconnects mid-line and
# mid-handshake, a reader that never reads, garbage and oversized-line flooders,
# garbage instead of hello, half-open handshakes, handshake-then-silence, half-closed
# connections, look-alikes of connected names, relays of the wrong form, a flood of
# connections from one source, every connection behind a PROXY header), then a server restart on the same port with every healthy client
# reconnecting. Fails on a panic, an unclean exit, RSS above the bound, any lost,
# duplicated or reordered message between healthy clients, or a misbehaving client that
# was not cut off with its reason in the server log. Then a short relay round with v1
# and with protocol v2 clients (see the end).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cargo build -p seguro --bin seguro
cargo build -p seguro-bench --bin seguro-bench
bin="${CARGO_TARGET_DIR:-target}/debug"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
if ! timeout 180 "$bin/seguro-bench" soak --spawn "$bin/seguro" --secs 40 \
    --after-restart-secs 10 --max-rss-mib 64 --keep-logs "$logs"; then
    echo "--- server log (last 40 lines, relays omitted) ---" >&2
    grep -hv " relayed " "$logs"/server-*.stderr 2>/dev/null | tail -n 40 >&2 || true
    exit 1
fi
# Protocol v2 clients through the relay (a few seconds): one short round with v1 clients
# and one with real v2 clients (v2 hello and proof, prekeys, bundles, Double Ratchet,
# relay2 with acks). Fails if any message is lost, duplicated, reordered, fails to open
# or is not acknowledged as forwarded; no timing is checked.
timeout 120 "$bin/seguro-bench" relay --v2 --spawn "$bin/seguro" --pairs 4 --window 8 \
    --size 64 --secs 2 --rounds 1
