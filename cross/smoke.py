#!/usr/bin/env python3
"""End-to-end smoke test of a (cross-compiled) Seguro server with two native clients.

    cross/smoke.py --server "qemu-aarch64 -L /usr/aarch64-linux-gnu target/.../seguro" \
                   --client target/debug/seguro

Starts `seguro serve` (the --server command line, e.g. an aarch64 binary under qemu-user) on
127.0.0.1 with a free port and an empty temporary directory, so that it generates its own
certificate and key. Then two `seguro chat` clients (alice, bob), pinning that certificate,
read commands from a pipe and:
  - alice asks the server for an echo:    `/server <text>`  -> alice prints `[SERVER] echo: <text>`
  - alice sends bob an E2EE message:      `/to bob <text>`  -> bob prints   `[alice] <text>`
  - bob answers alice:                    `/to alice <text>` -> alice prints `[bob] <text>`
It also checks that the generated key is private to its owner, that neither client printed an
`[ERROR]` line, that the plaintexts never appear in the server's output, that both clients
exit with 0 at the end of their input, and that the server stops cleanly on SIGTERM.
Every wait has a timeout; every process is killed and the directory removed on the way out.
Exits 0 when every check passed, 1 otherwise.
"""

import argparse
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

STEP_TIMEOUT = 60.0  # seconds for any single wait (qemu-user is slow, not that slow)


class Failure(Exception):
    """A check that did not hold."""


class Proc:
    """A child process whose output lines are collected by a thread."""

    def __init__(self, name, argv, env, stdin=False):
        self.name = name
        self.argv = argv
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        try:
            self.p = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise Failure(f"cannot start {name} ({shlex.join(argv)}): {e}") from e
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def send(self, text):
        if self.p.stdin is None:
            raise Failure(f"{self.name}: no input pipe")
        try:
            self.p.stdin.write((text + "\n").encode("utf-8"))
            self.p.stdin.flush()
        except OSError as e:
            raise Failure(f"{self.name}: cannot write {text!r}: {e}") from e

    def close_input(self):
        if self.p.stdin is not None and not self.p.stdin.closed:
            try:
                self.p.stdin.close()
            except OSError:
                pass

    def wait_line(self, what, pred, timeout=STEP_TIMEOUT):
        """Waits for an output line satisfying pred; returns it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                if self.closed:
                    raise Failure(f"{self.name} ended its output before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"{self.name}: no {what} within {timeout:.0f} s")
                self.cond.wait(left)

    def output(self):
        with self.cond:
            return list(self.lines)

    def wait_exit(self, timeout=STEP_TIMEOUT):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise Failure(f"{self.name} did not exit within {timeout:.0f} s") from e

    def kill(self):
        self.close_input()
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.reader.join(timeout=5)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(server, port, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.p.poll() is not None:
            raise Failure(f"server exited with {server.p.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise Failure(f"server not listening on 127.0.0.1:{port} within {timeout:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True,
                    help="command line running the seguro binary that serves")
    ap.add_argument("--client", required=True, help="the seguro binary the clients run")
    args = ap.parse_args()

    server_cmd = shlex.split(args.server)
    client = os.path.abspath(args.client)
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", RUST_LOG="info")
    tmp = tempfile.mkdtemp(prefix="seguro-smoke-")
    crt = os.path.join(tmp, "server.crt")
    key = os.path.join(tmp, "server.key")
    procs = []
    passed = []
    token = secrets.token_hex(4)
    echo_text = f"hola desde alice {token}"
    to_bob = f"hola bob, ¿qué tal? ñandú {token}"
    to_alice = f"todo bien, alice {token} 🚀"

    def check(name, ok, detail=""):
        if not ok:
            raise Failure(f"{name}{': ' + detail if detail else ''}")
        passed.append(name)
        print(f"ok: {name}", flush=True)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)

    failed = None
    try:
        for attempt in range(3):
            port = free_port()
            server = Proc("server", server_cmd + [
                "serve", "--bind", f"127.0.0.1:{port}", "--cert", crt, "--key", key,
            ], env)
            procs.append(server)
            try:
                wait_listening(server, port)
                break
            except Failure:
                # The free port may have been taken in between: try another one.
                in_use = any("in use" in line for line in server.output())
                if not in_use or attempt == 2:
                    raise
                print(f"port {port} taken meanwhile, trying another one", flush=True)
                server.kill()
                procs.remove(server)
        check("server listens on a free port", True, f"127.0.0.1:{port}")
        check("server generated its certificate and key",
              os.path.isfile(crt) and os.path.isfile(key))
        mode = stat.S_IMODE(os.stat(key).st_mode)
        check("server.key is private to its owner", mode & 0o077 == 0, f"mode {mode:o}")

        # The clients keep their identities in the temporary directory, not in the home
        # directory of whoever runs the test.
        client_env = dict(env, XDG_DATA_HOME=os.path.join(tmp, "data"))

        def chat(user):
            return Proc(user, [client, "chat", user, "127.0.0.1", str(port), "--cert", crt,
                               "--no-reconnect", "--linger", "2"], client_env, stdin=True)

        alice = chat("alice")
        procs.append(alice)
        alice.wait_line("[SYS] line (connected)", lambda s: s.startswith("[SYS] "))
        bob = chat("bob")
        procs.append(bob)
        # Each needs the other's public key before a /to can be sealed.
        bob.wait_line("alice in the directory", lambda s: s.startswith("[SYS] ")
                      and "alice" in s.split())
        alice.wait_line("bob in the directory", lambda s: s.startswith("[SYS] ")
                        and "bob" in s.split())
        check("both clients connected and see each other", True)

        alice.send(f"/server {echo_text}")
        want = f"[SERVER] echo: {echo_text}"
        alice.wait_line(repr(want), lambda s: s == want)
        check("/server echo", True)

        alice.send(f"/to bob {to_bob}")
        want = f"[alice] {to_bob}"
        bob.wait_line(repr(want), lambda s: s == want)
        check("E2EE message alice -> bob", True)

        bob.send(f"/to alice {to_alice}")
        want = f"[bob] {to_alice}"
        alice.wait_line(repr(want), lambda s: s == want)
        check("E2EE message bob -> alice", True)

        alice.close_input()
        bob.close_input()
        for c in (alice, bob):
            rc = c.wait_exit()
            check(f"{c.name} exits with 0 at the end of its input", rc == 0, f"exit {rc}")
            errors = [s for s in c.output() if s.startswith("[ERROR]")]
            check(f"{c.name} printed no [ERROR] line", not errors, repr(errors))

        server_out = "\n".join(server.output())
        check("no plaintext in the server's output",
              to_bob not in server_out and to_alice not in server_out
              and "ñandú" not in server_out)

        server.p.send_signal(signal.SIGTERM)
        rc = server.wait_exit(timeout=30)
        check("server stops with 0 on SIGTERM", rc == 0, f"exit {rc}")
    except Failure as e:
        failed = str(e)
    finally:
        for p in reversed(procs):  # clients first, then the server
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if failed is not None:
            print(f"FAILED: {failed}", flush=True)
            for p in procs:
                print(f"--- {p.name}: {shlex.join(p.argv)} (exit {p.p.returncode})")
                for line in p.output():
                    print(f"  {line}")

    print(f"smoke: {len(passed)} passed, {0 if failed is None else 1} failed", flush=True)
    return 0 if failed is None else 1


if __name__ == "__main__":
    sys.exit(main())
