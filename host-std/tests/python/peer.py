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
import selectors
import socket
import ssl
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALG = "X25519+AESGCM"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# Each peer runs one thread that does all socket I/O (with a selector): OpenSSL
# connections must not be read and written from two threads at once.


def recv_all(sock):
    """Reads what is available (one recv plus whatever TLS already decrypted)."""
    try:
        data = sock.recv(65536)
        while data and sock.pending():
            data += sock.recv(sock.pending())
    except ssl.SSLWantReadError:
        return None  # a TLS record without application data (e.g. a session ticket)
    except (OSError, ssl.SSLError):
        return b""
    return data


def send(sock, obj):
    sock.sendall((json.dumps(obj) + "\n").encode("utf-8"))


def split_lines(buf, data):
    buf += data
    out = []
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        line = line.rstrip(b"\r")
        if line:
            out.append(line)
    return buf, out


def fingerprint(pub):
    h = hashlib.sha256(pub).hexdigest()[:16]
    return h[:8] + "-" + h[8:]


def derive(secret, peer_pub):
    shared = secret.exchange(X25519PublicKey.from_public_bytes(peer_pub))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"chat-e2ee").derive(shared)


# ---------------------------------------------------------------- server


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.name = None


class Server:
    def __init__(self, push):
        # The reference sends `users` only in reply to `list`; Seguro also pushes it.
        self.push = push
        self.users = {}  # name -> (pub_b64, Conn)

    def directory(self):
        return {n: u[0] for n, u in self.users.items()}

    def safe_send(self, conn, obj):
        try:
            send(conn.sock, obj)
        except (OSError, ssl.SSLError):
            pass

    def broadcast_users(self):
        d = self.directory()
        for _, c in list(self.users.values()):
            self.safe_send(c, {"type": "users", "users": d})

    def handle_line(self, c, line):
        """Returns False to close the connection."""
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if c.name is None:
            if not isinstance(msg, dict) or msg.get("type") != "hello":
                self.safe_send(c, {"type": "error", "text": "first message must be hello"})
                return False
            user, pub = msg.get("user"), msg.get("pub")
            try:
                key = base64.b64decode(pub, validate=True)
            except Exception:
                key = b""
            if not isinstance(user, str) or not user or len(key) != 32:
                self.safe_send(c, {"type": "error", "text": "bad hello"})
                return False
            if user in self.users:
                self.safe_send(c, {"type": "error", "text": "name taken"})
                return False
            c.name = user
            self.users[user] = (pub, c)
            self.safe_send(c, {"type": "welcome", "users": self.directory()})
            if self.push:
                self.broadcast_users()
            return True
        if msg is None:
            self.safe_send(c, {"type": "error", "text": "invalid json"})
            return True
        t = msg.get("type") if isinstance(msg, dict) else None
        if t == "list":
            self.safe_send(c, {"type": "users", "users": self.directory()})
        elif t == "chat":
            self.safe_send(c, {"type": "server", "text": "echo: " + str(msg.get("text"))})
        elif t == "relay":
            target = self.users.get(msg.get("to"))
            if target is None:
                self.safe_send(c, {"type": "error", "text": "destino no conectado"})
            else:
                fwd = dict(msg)
                fwd["from"] = c.name
                self.safe_send(target[1], fwd)
        else:
            self.safe_send(c, {"type": "error", "text": "tipo desconocido"})
        return True

    def drop(self, sel, c):
        sel.unregister(c.sock)
        try:
            c.sock.close()
        except OSError:
            pass
        if c.name is not None and self.users.get(c.name, (None, None))[1] is c:
            del self.users[c.name]
            if self.push:
                self.broadcast_users()


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
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                raw, _ = lsock.accept()
                raw.settimeout(30)
                try:
                    tls = ctx.wrap_socket(raw, server_side=True)  # handshake, blocking
                except (OSError, ssl.SSLError):
                    raw.close()
                    continue
                sel.register(tls, selectors.EVENT_READ, Conn(tls))
                continue
            c = key.data
            data = recv_all(c.sock)
            if data is None:
                continue
            if not data:
                srv.drop(sel, c)
                continue
            c.buf, lines = split_lines(c.buf, data)
            for line in lines:
                if not srv.handle_line(c, line):
                    srv.drop(sel, c)
                    break


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
    raw = socket.create_connection((host, port), timeout=30)
    tls = ctx.wrap_socket(raw, server_hostname="servidor-local")
    if tls.getpeercert(binary_form=True) != pinned_der:
        tls.close()
        raise ssl.SSLError("presented certificate is not the pinned one")
    return tls


class ChatClient:
    def __init__(self, args, sock):
        self.args = args
        self.sock = sock
        self.secret = X25519PrivateKey.generate()
        self.pub = self.secret.public_key().public_bytes(
            encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
        self.directory = {}
        self.registered = False

    def show_dir(self):
        out("[SYS] users: " + ", ".join(
            "%s %s" % (n, fingerprint(base64.b64decode(k))) for n, k in sorted(self.directory.items())))

    def on_line(self, line):
        msg = json.loads(line)
        t = msg.get("type")
        if t in ("welcome", "users"):
            self.directory = dict(msg["users"])
            self.show_dir()
            if t == "welcome":
                self.registered = True
        elif t == "server":
            out("[SERVER] " + msg["text"])
        elif t == "error":
            out("[ERROR] " + msg["text"])
        elif t == "relay":
            sender = msg.get("from")
            k = self.directory.get(sender)
            if k is None:
                out("[ERROR] unknown sender %s" % sender)
                return
            try:
                key = derive(self.secret, base64.b64decode(k))
                pt = AESGCM(key).decrypt(
                    base64.b64decode(msg["nonce"]), base64.b64decode(msg["cipher"]), None)
                out("[%s] %s" % (sender, pt.decode("utf-8")))
            except Exception:
                out("[ERROR] could not decrypt message from %s" % sender)

    def on_command(self, line):
        if line == "/list":
            send(self.sock, {"type": "list"})
        elif line.startswith("/server "):
            send(self.sock, {"type": "chat", "text": line[len("/server "):]})
        elif line.startswith("/fp "):
            k = self.directory.get(line[4:])
            out("[SYS] fp %s: %s" % (line[4:], fingerprint(base64.b64decode(k)) if k else "?"))
        elif line.startswith("/to "):
            _, user, text = line.split(" ", 2)
            k = self.directory.get(user)
            if k is None:
                out("[ERROR] unknown user %s" % user)
                return
            key = derive(self.secret, base64.b64decode(k))
            nonce = os.urandom(12)
            ct = AESGCM(key).encrypt(nonce, text.encode("utf-8"), None)
            send(self.sock, {
                "type": "relay", "to": user, "from": self.args.user, "alg": ALG,
                "nonce": base64.b64encode(nonce).decode(), "cipher": base64.b64encode(ct).decode(),
            })
        elif line.strip():
            out("[ERROR] unknown command")


def run_client(args):
    try:
        sock = connect_pinned(args.host, args.port, args.cert)
    except (OSError, ssl.SSLError) as e:
        out("[ERROR] %s" % e)
        return 3
    c = ChatClient(args, sock)
    send(sock, {"type": "hello", "user": args.user, "pub": base64.b64encode(c.pub).decode()})
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "net")
    stdin_fd = sys.stdin.fileno()
    stdin_on = False
    sbuf = b""
    ibuf = b""
    deadline = None  # set at end of input: keep receiving until then
    while deadline is None or time.monotonic() < deadline:
        if c.registered and not stdin_on and deadline is None:
            # Commands wait for the registration, like the seguro client.
            sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
            stdin_on = True
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data == "net":
                data = recv_all(sock)
                if data is None:
                    continue
                if not data:
                    out("[WARN] connection closed")
                    return 0 if deadline is not None else 1
                sbuf, lines = split_lines(sbuf, data)
                for line in lines:
                    c.on_line(line)
            else:
                data = os.read(stdin_fd, 65536)
                if not data:
                    sel.unregister(stdin_fd)
                    stdin_on = False
                    deadline = time.monotonic() + args.linger
                    continue
                ibuf += data
                while b"\n" in ibuf:
                    line, ibuf = ibuf.split(b"\n", 1)
                    c.on_command(line.decode("utf-8"))
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
