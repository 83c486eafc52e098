#!/usr/bin/env python3
"""A lying server for tests: a TLS proxy that holds the server's own certificate and key
(the operator is the attacker, so the clients' pin accepts it), sits in front of a real
server (`seguro serve`, or peer.py's reference server) and forwards every line both
ways, tampering only with end-to-end messages (v1 `relay` and protocol v2 `relay2`):

  --replay      every relay delivered to a client is delivered twice;
  --reflect     a relay a client sends to X is also handed back to that client, as if X
                had sent it (v1 uses the same key both ways, so it decrypts);
  --replay-old  when a user connects again, every relay delivered to that user on an
                earlier connection is delivered again, right after the welcome;
  --substitute  every relay2 delivered to a client comes first as a forgery: the same
                line with one byte of its sealed body changed;
  --strip-v2-later  on a user's second and later connections, the `v2` section of
                the directory (`welcome`, `users`) is removed: every peer looks like a
                v1 client (a downgrade, protocol v2 §2.4);
  --bad-bundle  every prekey bundle handed to a client has its signed prekey replaced
                by the proxy's own key (its signature no longer verifies), and the
                identity key changed too when the bundle is for a name starting "m"
                (the directory lists another one).
  --swap-ed-later  on a user's second and later connections, every other user's v2
                directory entry carries the proxy's own Ed25519 key with a valid
                binding over that user's name and X25519 key (protocol v2 §3.3: the
                fingerprint stays the same); needs the `cryptography` package.
  --garble      every relay2 delivered to a client comes after four malformed ones:
                one without `from`, one whose body is not base64, one from a name
                nobody uses (`nadie`), and one whose body is base64 of three bytes.

It prints `listening on 127.0.0.1:PORT` once ready, logs each tampering on stderr
(`proxy: replayed ...`), and runs until killed. Standard library only (ssl, socket).

Usage: lying_proxy.py --upstream PORT --cert server.crt --key server.key [modes]
"""
import argparse
import base64
import json
import select
import socket
import ssl
import sys
import threading

delivered = {}  # user -> [relay lines delivered on earlier connections]
connections = {}  # user -> connections so far
lock = threading.Lock()


ED_SEED = bytes(range(100, 132))


def swapped_v2(name, x_b64, entry):
    """`entry` with the proxy's Ed25519 key and its binding over (name, X)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    sk = Ed25519PrivateKey.from_private_bytes(ED_SEED)
    ed = sk.public_key().public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
    n = name.encode()
    msg = b"seguro/v2/identity\x00" + bytes([len(n)]) + n + base64.b64decode(x_b64) + ed
    out = dict(entry)
    out["ed"] = base64.b64encode(ed).decode()
    out["bind"] = base64.b64encode(sk.sign(msg)).decode()
    return out


def log(text):
    print("proxy: " + text, file=sys.stderr, flush=True)


def parse(line):
    try:
        obj = json.loads(line)
        return obj if isinstance(obj, dict) else None
    except ValueError:
        return None


class Link:
    """One client connection and its upstream connection, pumped by one thread (an
    OpenSSL connection must not be read and written from two threads at once)."""

    def __init__(self, args, down, up):
        self.args = args
        self.down = down
        self.up = up
        self.user = None
        self.nth = 0
        self.seen_here = []

    def to_client(self, line):
        self.down.sendall(line + b"\n")

    def on_client_line(self, line):
        obj = parse(line)
        if obj is not None and obj.get("type") == "hello":
            self.user = obj.get("user")
            with lock:
                connections[self.user] = connections.get(self.user, 0) + 1
                self.nth = connections[self.user]
        if self.args.reflect and obj is not None and obj.get("type") == "relay" and self.user:
            back = dict(obj)
            back["from"] = obj.get("to")
            back["to"] = self.user
            self.to_client(json.dumps(back).encode())
            log("reflected a relay of %s to %s back to %s" % (self.user, obj.get("to"), self.user))
        if self.args.reflect and obj is not None and obj.get("type") == "relay2" and self.user:
            # As the server forwards it: `from` set, no `to` and no `id`.
            back = {"type": "relay2", "from": obj.get("to"), "body": obj.get("body")}
            self.to_client(json.dumps(back).encode())
            log("reflected a relay of %s to %s back to %s" % (self.user, obj.get("to"), self.user))
        self.up.sendall(line + b"\n")

    def on_server_line(self, line):
        obj = parse(line)
        kind = obj.get("type") if obj is not None else None
        if kind in ("welcome", "users") and self.args.strip_v2_later and self.nth >= 2 \
                and "v2" in obj:
            stripped = dict(obj)
            del stripped["v2"]
            line = json.dumps(stripped).encode()
            log("removed the v2 directory for %s" % self.user)
        if self.args.swap_ed_later and self.nth >= 2 and obj is not None:
            if kind in ("welcome", "users") and isinstance(obj.get("v2"), dict):
                forged = json.loads(json.dumps(obj))
                users = forged["v2"].get("users", {})
                for name in list(users):
                    if name != self.user and name in obj.get("users", {}):
                        users[name] = swapped_v2(name, obj["users"][name], users[name])
                line = json.dumps(forged).encode()
                log("swapped the signing keys in the directory for %s" % self.user)
            elif kind == "dir" and isinstance(obj.get("v2"), dict) and "pub" in obj:
                forged = dict(obj)
                forged["v2"] = swapped_v2(obj["user"], obj["pub"], obj["v2"])
                line = json.dumps(forged).encode()
                log("swapped the signing key of %s for %s" % (obj["user"], self.user))
        if kind == "bundle" and self.args.bad_bundle:
            forged = dict(obj)
            forged["spk"] = base64.b64encode(bytes(range(1, 33))).decode()
            if str(obj.get("user", "")).startswith("m"):
                forged["ed"] = base64.b64encode(bytes(range(2, 34))).decode()
            line = json.dumps(forged).encode()
            log("substituted the bundle of %s for %s" % (obj.get("user"), self.user))
        if kind == "relay2" and self.args.garble:
            body = obj.get("body", "")
            sender = obj.get("from")
            for bad in ({"type": "relay2", "body": body},
                        {"type": "relay2", "from": sender, "body": "*not base64*"},
                        {"type": "relay2", "from": "nadie", "body": body},
                        {"type": "relay2", "from": sender, "body": "AAAA"}):
                self.to_client(json.dumps(bad).encode())
            log("garbled a relay2 from %s to %s" % (sender, self.user))
        if kind == "relay2" and self.args.substitute:
            body = bytearray(base64.b64decode(obj.get("body", "")))
            if body:
                body[-1] ^= 0x01  # the tag's last byte
                forged = dict(obj)
                forged["body"] = base64.b64encode(bytes(body)).decode()
                self.to_client(json.dumps(forged).encode())
                log("substituted a relay2 from %s to %s" % (obj.get("from"), self.user))
        self.to_client(line)
        if kind == "welcome" and self.args.replay_old and self.user:
            with lock:
                old = list(delivered.get(self.user, []))
            for o in old:
                self.to_client(o)
            if old:
                log("replayed %d old relay(s) to %s" % (len(old), self.user))
        if kind in ("relay", "relay2"):
            self.seen_here.append(line)
            if self.args.replay:
                self.to_client(line)
                log("replayed a relay from %s to %s" % (obj.get("from"), self.user))

    def run(self):
        bufs = {self.down: b"", self.up: b""}
        handlers = {self.down: self.on_client_line, self.up: self.on_server_line}
        try:
            while True:
                ready = [s for s in bufs if s.pending()]
                if not ready:
                    ready, _, _ = select.select(list(bufs), [], [], 1.0)
                for s in ready:
                    # Non-blocking read: a readable socket may carry only TLS records
                    # without data (a session ticket); writes block (timeout 30 s).
                    s.settimeout(0)
                    try:
                        data = s.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        continue
                    finally:
                        s.settimeout(30)
                    if not data:
                        return
                    bufs[s] += data
                    while b"\n" in bufs[s]:
                        line, bufs[s] = bufs[s].split(b"\n", 1)
                        handlers[s](line)
        except (OSError, ssl.SSLError):
            return
        finally:
            self.close()

    def close(self):
        if self.user and self.seen_here:
            with lock:
                delivered.setdefault(self.user, []).extend(self.seen_here)
                self.seen_here = []
        for s in (self.down, self.up):
            try:
                s.close()
            except OSError:
                pass


def serve(args):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(args.cert, args.key)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE  # the attacker's own server
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(64)
    print("listening on 127.0.0.1:%d" % lsock.getsockname()[1], flush=True)

    def handle(raw):
        try:
            raw.settimeout(30)
            down = sctx.wrap_socket(raw, server_side=True)
            up = cctx.wrap_socket(socket.create_connection(("127.0.0.1", args.upstream), 30))
        except (OSError, ssl.SSLError) as e:
            log("connection failed: %s" % e)
            raw.close()
            return
        Link(args, down, up).run()

    while True:
        raw, _ = lsock.accept()
        threading.Thread(target=handle, args=(raw,), daemon=True).start()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", type=int, required=True, help="the real server's port")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--replay", action="store_true")
    p.add_argument("--reflect", action="store_true")
    p.add_argument("--replay-old", action="store_true")
    p.add_argument("--substitute", action="store_true")
    p.add_argument("--bad-bundle", action="store_true")
    p.add_argument("--strip-v2-later", action="store_true")
    p.add_argument("--garble", action="store_true")
    p.add_argument("--swap-ed-later", action="store_true")
    serve(p.parse_args())


if __name__ == "__main__":
    main()
