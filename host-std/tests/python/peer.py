#!/usr/bin/env python3
"""An independent Seguro v1 peer, written from PROTOCOL.md only (Python ssl + pyca/cryptography).

    peer.py server --port 0 --cert server.crt --key server.key
        prints "listening on HOST:PORT", serves until killed.
    peer.py client USER HOST PORT --cert server.crt
        reads /list, /fp <u>, /to <u> <text>, /server <text> from stdin; prints
        [SYS] / [SERVER] / [ERROR] / [WARN] / [<from>] <text> lines; exits at EOF.

Lines are written the way the reference writes them: json.dumps defaults
(", " and ": " separators, non-ASCII escaped as \\uXXXX, surrogate pairs).
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALG = "X25519+AESGCM"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def send(sock, lock, obj):
    data = (json.dumps(obj) + "\n").encode("utf-8")
    with lock:
        sock.sendall(data)


def lines(sock):
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (OSError, ssl.SSLError):
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if line:
                yield line


def fingerprint(pub):
    h = hashlib.sha256(pub).hexdigest()[:16]
    return h[:8] + "-" + h[8:]


def derive(secret, peer_pub):
    shared = secret.exchange(X25519PublicKey.from_public_bytes(peer_pub))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"chat-e2ee").derive(shared)


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, push):
        # The reference sends `users` only in reply to `list`; Seguro also pushes it.
        self.push = push
        self.lock = threading.Lock()
        self.users = {}  # name -> (pub_b64, sock, send_lock)

    def directory(self):
        with self.lock:
            return {n: u[0] for n, u in self.users.items()}

    def broadcast_users(self):
        d = self.directory()
        with self.lock:
            targets = [(u[1], u[2]) for u in self.users.values()]
        for s, l in targets:
            try:
                send(s, l, {"type": "users", "users": d})
            except OSError:
                pass

    def handle(self, sock):
        wlock = threading.Lock()
        name = None
        try:
            it = lines(sock)
            first = next(it, None)
            if first is None:
                return
            try:
                msg = json.loads(first)
            except ValueError:
                msg = None
            if not isinstance(msg, dict) or msg.get("type") != "hello":
                send(sock, wlock, {"type": "error", "text": "first message must be hello"})
                return
            user, pub = msg.get("user"), msg.get("pub")
            try:
                key = base64.b64decode(pub, validate=True)
            except Exception:
                key = b""
            if not isinstance(user, str) or not user or len(key) != 32:
                send(sock, wlock, {"type": "error", "text": "bad hello"})
                return
            with self.lock:
                if user in self.users:
                    taken = True
                else:
                    taken = False
                    self.users[user] = (pub, sock, wlock)
            if taken:
                send(sock, wlock, {"type": "error", "text": "name taken"})
                return
            name = user
            send(sock, wlock, {"type": "welcome", "users": self.directory()})
            if self.push:
                self.broadcast_users()
            for line in it:
                try:
                    msg = json.loads(line)
                except ValueError:
                    send(sock, wlock, {"type": "error", "text": "invalid json"})
                    continue
                t = msg.get("type") if isinstance(msg, dict) else None
                if t == "list":
                    send(sock, wlock, {"type": "users", "users": self.directory()})
                elif t == "chat":
                    send(sock, wlock, {"type": "server", "text": "echo: " + str(msg.get("text"))})
                elif t == "relay":
                    to = msg.get("to")
                    with self.lock:
                        target = self.users.get(to)
                    if target is None:
                        send(sock, wlock, {"type": "error", "text": "destino no conectado"})
                    else:
                        fwd = dict(msg)
                        fwd["from"] = name
                        send(target[1], target[2], fwd)
                else:
                    send(sock, wlock, {"type": "error", "text": "tipo desconocido"})
        finally:
            if name is not None:
                with self.lock:
                    self.users.pop(name, None)
                if self.push:
                    self.broadcast_users()
            try:
                sock.close()
            except OSError:
                pass


def run_server(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(64)
    host, port = lsock.getsockname()
    out("listening on %s:%d" % (host, port))
    srv = Server(args.push)

    def conn(raw):
        raw.settimeout(30)
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        tls.settimeout(None)
        srv.handle(tls)

    while True:
        raw, _ = lsock.accept()
        threading.Thread(target=conn, args=(raw,), daemon=True).start()


# ---------------------------------------------------------------- client


def connect_pinned(host, port, cert_path):
    with open(cert_path, "rb") as f:
        pem = f.read()
    pinned_der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # reached through tunnels: the host never matches
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=pem.decode("ascii"))  # the pinned cert is the only anchor
    raw = socket.create_connection((host, port), timeout=15)
    tls = ctx.wrap_socket(raw, server_hostname="servidor-local")
    if tls.getpeercert(binary_form=True) != pinned_der:
        tls.close()
        raise ssl.SSLError("presented certificate is not the pinned one")
    tls.settimeout(None)
    return tls


def run_client(args):
    secret = X25519PrivateKey.generate()
    pub = secret.public_key().public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    try:
        sock = connect_pinned(args.host, args.port, args.cert)
    except (OSError, ssl.SSLError) as e:
        out("[ERROR] %s" % e)
        return 3
    wlock = threading.Lock()
    directory = {}
    registered = threading.Event()

    def show_dir():
        out("[SYS] users: " + ", ".join(
            "%s %s" % (n, fingerprint(base64.b64decode(k))) for n, k in sorted(directory.items())))

    def reader():
        for line in lines(sock):
            msg = json.loads(line)
            t = msg.get("type")
            if t in ("welcome", "users"):
                directory.clear()
                directory.update(msg["users"])
                show_dir()
                if t == "welcome":
                    registered.set()
            elif t == "server":
                out("[SERVER] " + msg["text"])
            elif t == "error":
                out("[ERROR] " + msg["text"])
            elif t == "relay":
                sender = msg.get("from")
                k = directory.get(sender)
                if k is None:
                    out("[ERROR] unknown sender %s" % sender)
                    continue
                try:
                    key = derive(secret, base64.b64decode(k))
                    pt = AESGCM(key).decrypt(
                        base64.b64decode(msg["nonce"]), base64.b64decode(msg["cipher"]), None)
                    out("[%s] %s" % (sender, pt.decode("utf-8")))
                except Exception:
                    out("[ERROR] could not decrypt message from %s" % sender)
        registered.set()

    threading.Thread(target=reader, daemon=True).start()
    send(sock, wlock, {"type": "hello", "user": args.user, "pub": base64.b64encode(pub).decode()})
    registered.wait(15)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line == "/list":
            send(sock, wlock, {"type": "list"})
        elif line.startswith("/server "):
            send(sock, wlock, {"type": "chat", "text": line[len("/server "):]})
        elif line.startswith("/fp "):
            k = directory.get(line[4:])
            out("[SYS] fp %s: %s" % (line[4:], fingerprint(base64.b64decode(k)) if k else "?"))
        elif line.startswith("/to "):
            _, user, text = line.split(" ", 2)
            k = directory.get(user)
            if k is None:
                out("[ERROR] unknown user %s" % user)
                continue
            key = derive(secret, base64.b64decode(k))
            nonce = os.urandom(12)
            ct = AESGCM(key).encrypt(nonce, text.encode("utf-8"), None)
            send(sock, wlock, {
                "type": "relay", "to": user, "from": args.user, "alg": ALG,
                "nonce": base64.b64encode(nonce).decode(), "cipher": base64.b64encode(ct).decode(),
            })
        elif line.strip():
            out("[ERROR] unknown command")
    time.sleep(args.linger)
    try:
        sock.close()
    except OSError:
        pass
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--bind", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--push", action="store_true", help="push users on join/leave like Seguro")
    c = sub.add_parser("client")
    c.add_argument("user")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--cert", required=True)
    c.add_argument("--linger", type=float, default=1.0)
    args = p.parse_args()
    if args.mode == "server":
        run_server(args)
        return 0
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
