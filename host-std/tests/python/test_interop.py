"""Interop: `seguro` against an independent Python peer (peer.py), both roles, both certs.

Run: SEGURO_BIN=target/debug/seguro python3 -m unittest discover -s host-std/tests/python -v
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")
BIN = os.environ.get("SEGURO_BIN") or os.path.join(HERE, "..", "..", "..", "target", "debug", "seguro")
V1_ONLY = ("[SYS] this server speaks protocol v1 only: messages are protected by v1 (no forward "
           "secrecy; the server could replay or reflect them)")
T = 30.0  # generous: python start-up is slow on a loaded 2-core machine


class Proc:
    """A child process with piped stdin and stdout collected by a thread."""

    def __init__(self, argv):
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1)
        self.lines = []
        self.err = []
        self.cv = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_err, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def _drain_err(self):
        for line in self.p.stderr:
            with self.cv:
                self.err.append(line.rstrip("\n"))

    def wait(self, pred, what, timeout=T):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for l in self.lines:
                    if pred(l):
                        return l
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError("timed out waiting for %s; output:\n%s\nstderr:\n%s" % (
                        what, "\n".join(self.lines), "\n".join(self.err[-30:])))
                self.cv.wait(left)

    def wait_exact(self, line):
        return self.wait(lambda l: l == line, repr(line))

    def wait_for(self, part):
        return self.wait(lambda l: part in l, repr(part))

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def finish(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            return self.p.wait(T)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


class Interop(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="seguro-interop-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, argv):
        p = Proc(argv)
        self.procs.append(p)
        return p

    def path(self, name):
        return os.path.join(self.dir, name)

    def seguro_pair(self):
        crt, key = self.path("seguro.crt"), self.path("seguro.key")
        subprocess.run([BIN, "gen-cert", "--cert", crt, "--key", key], check=True,
                       stdout=subprocess.DEVNULL, timeout=T)
        return crt, key

    def openssl_pair(self):
        crt, key = self.path("rsa.crt"), self.path("rsa.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", key,
                        "-out", crt, "-days", "365", "-nodes", "-subj", "/CN=servidor-local"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        return crt, key

    def port_of(self, server):
        line = server.wait_for("listening on ")
        return int(line.rsplit(":", 1)[1])

    def seguro_server(self, crt, key):
        s = self.start([BIN, "serve", "--bind", "127.0.0.1:0", "--cert", crt, "--key", key])
        return self.port_of(s)

    def python_server(self, crt, key):
        s = self.start([sys.executable, PEER, "server", "--port", "0", "--cert", crt, "--key", key])
        return self.port_of(s)

    def rs_client(self, user, port, crt):
        c = self.start([BIN, "chat", user, "127.0.0.1", str(port), "--cert", crt,
                        "--state-dir", self.path("state")])
        c.wait_for("[SYS] connected to 127.0.0.1:%d as %s" % (port, user))
        return c

    def py_client(self, user, port, crt):
        c = self.start([sys.executable, PEER, "client", user, "127.0.0.1", str(port), "--cert", crt])
        c.wait_for("[SYS] users: ")
        return c

    # ---- seguro serves, the Python client talks to a seguro client through it

    def check_seguro_server(self, crt, key):
        port = self.seguro_server(crt, key)
        rs = self.rs_client("rustacean", port, crt)
        py = self.py_client("pythonista", port, crt)
        rs.wait_for("[SYS] pythonista joined")
        py.send("/to rustacean hola desde Python, ¿qué tal? 🚀")
        rs.wait_exact("[pythonista] hola desde Python, ¿qué tal? 🚀")
        rs.send("/to pythonista hola desde Rust, ñandú 🦀")
        py.wait_exact("[rustacean] hola desde Rust, ñandú 🦀")
        py.send("/server ping ñ")
        py.wait_exact("[SERVER] echo: ping ñ")
        # Same short fingerprint on both sides.
        rs.send("/fp pythonista")
        fp_rs = rs.wait_for("[SYS] fp pythonista: ").rsplit(" ", 1)[1]
        py.send("/fp pythonista")
        fp_py = py.wait_for("[SYS] fp pythonista: ").rsplit(" ", 1)[1]
        self.assertEqual(fp_rs, fp_py)
        self.assertEqual(py.finish(), 0)
        rs.wait_exact("[SYS] pythonista left")
        self.assertEqual(rs.finish(), 0)
        # The seguro client spoke the v2 hello (challenge, proof) with its own server:
        # no v1-only notice.
        self.assertNotIn(V1_ONLY, rs.lines)

    def test_seguro_server_with_its_own_certificate(self):
        self.check_seguro_server(*self.seguro_pair())

    def test_seguro_server_with_the_reference_openssl_rsa_certificate(self):
        self.check_seguro_server(*self.openssl_pair())

    # ---- the Python server (reference rules) serves seguro clients

    def check_python_server(self, crt, key):
        # Reference rules: no directory pushes, so clients learn of newcomers through
        # `list` -- which the seguro client sends by itself when a message arrives from a
        # sender it does not know yet.
        port = self.python_server(crt, key)
        a = self.rs_client("ana", port, crt)
        # The reference server ignores the v2 field of the hello and never challenges:
        # the seguro client says once that v1 protects everything.
        a.wait_exact(V1_ONLY)
        b = self.rs_client("beto", port, crt)  # its welcome lists ana
        b.send("/to ana hola ana, soy beto 🔐")
        a.wait_exact("[beto] hola ana, soy beto 🔐")  # ana refreshed the directory first
        a.send("/to beto recibido")
        b.wait_exact("[ana] recibido")
        b.send("/server hi")
        b.wait_exact("[SERVER] echo: hi")
        py = self.py_client("pyt", port, crt)
        py.send("/to ana hola ana desde python")
        a.wait_exact("[pyt] hola ana desde python")
        a.send("/list")
        a.wait_for("[SYS]   pyt  fp ")
        a.send("/to pyt hola pyt desde seguro")
        py.wait_exact("[ana] hola pyt desde seguro")
        self.assertEqual(py.finish(), 0)
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)
        self.assertEqual(a.lines.count(V1_ONLY), 1, a.lines)
        self.assertEqual(b.lines.count(V1_ONLY), 1, b.lines)

    def test_python_server_with_the_reference_openssl_rsa_certificate(self):
        self.check_python_server(*self.openssl_pair())

    def test_python_server_with_seguros_certificate(self):
        self.check_python_server(*self.seguro_pair())

    # ---- a private seguro server refuses the reference client, saying why

    def test_python_client_is_refused_by_a_private_seguro_server_and_told_why(self):
        crt, key = self.seguro_pair()
        s = self.start([BIN, "serve", "--bind", "127.0.0.1:0", "--cert", crt, "--key", key,
                        "--private"])
        port = self.port_of(s)
        c = self.start([sys.executable, PEER, "client", "pyt", "127.0.0.1", str(port),
                        "--cert", crt])
        c.wait_exact("[ERROR] this server is private: it admits only invited users (a join "
                     "token from an invite, or a key on its allow list); ask its operator "
                     "for an invite and join with: seguro chat <user> --invite '<invite>'")
        c.wait_exact("[WARN] connection closed")
        self.assertEqual(c.finish(), 1)
        # It never saw a directory.
        self.assertFalse([l for l in c.lines if l.startswith("[SYS] users")], c.lines)
        # The same client on the same server without --private is served as before.
        s.kill()
        port = self.seguro_server(crt, key)
        py = self.py_client("pyt", port, crt)
        py.send("/server hola")
        py.wait_exact("[SERVER] echo: hola")
        self.assertEqual(py.finish(), 0)

    def test_python_server_ignores_the_join_token_of_a_seguro_client(self):
        crt, key = self.seguro_pair()
        port = self.python_server(crt, key)
        inv = subprocess.run([BIN, "invite", "--cert", crt, "--address", "127.0.0.1:%d" % port,
                              "--uses", "1"], check=True, capture_output=True, text=True,
                             timeout=T).stdout.strip()
        self.assertIn("/t=", inv)
        c = self.start([BIN, "chat", "ana", "--invite", inv, "--state-dir", self.path("state")])
        c.wait_for("[SYS] connected to 127.0.0.1:%d as ana" % port)
        c.send("/server hola")
        c.wait_exact("[SERVER] echo: hola")
        self.assertEqual(c.finish(), 0)

    def test_python_client_refuses_a_wrong_certificate(self):
        crt, key = self.seguro_pair()
        other, _ = self.openssl_pair()
        port = self.seguro_server(crt, key)
        c = self.start([sys.executable, PEER, "client", "x", "127.0.0.1", str(port), "--cert", other])
        self.assertEqual(c.finish(), 3)


if __name__ == "__main__":
    unittest.main()
