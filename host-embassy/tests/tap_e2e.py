#!/usr/bin/env python3
"""End-to-end test of the microcontroller client over a TAP device.

Inside a network namespace of its own (no other network, nothing outside it is
touched): the real `seguro serve` on the kernel side of a TAP device, the Linux
runner of `seguro-embassy` (embassy-net on the TAP, embedded-tls, seguro-core) and a
desktop `seguro chat`. Checks /to both ways, /server, /list (with fingerprints that
agree across clients), reconnection after a server restart, the loud warning on the
board when a user comes back with another key, a restart of the board with the same
flash image (same identity, no warning at its peer, the boot counter advanced, the
contacts kept: a key substituted after the restart is reported, not taken for a first
contact), a board
pinned by an invite (the server's key, not its certificate), and refusals: a wrong
pinned certificate, an invite for another key, an RSA server, an RSA pin.

usage: tap_e2e.py <netns-name> <seguro> <seguro-embassy-linux>   (as root)
Every wait has a timeout; the namespace is removed on exit, also on failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

TAP = "tap0"
SERVER_IP = "10.211.0.1"
CLIENT_CIDR = "10.211.0.2/24"
PORT = 7000
RSA_PORT = 7001
SMALL_PORT = 7002
WAIT = 30.0  # seconds for any single expected line


class Fail(Exception):
    pass


def run(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise Fail(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


class Proc:
    """A process inside the namespace whose output lines are collected."""

    def __init__(self, ns, name, argv, cwd=None):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", ns] + argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=cwd,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            print(f"  {self.name:>6} | {line}", flush=True)
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def send(self, line):
        print(f"  {self.name:>6} < {line}", flush=True)
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def expect(self, test, since=0, timeout=WAIT, what=None):
        """Waits for a line (from index `since`) for which `test(line)` holds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(since, len(self.lines)):
                    if test(self.lines[i]):
                        return i, self.lines[i]
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self.reader.is_alive()):
                    raise Fail(f"{self.name}: no line {what or test} within {timeout:.0f} s")
                self.cond.wait(min(left, 0.5))

    def expect_line(self, exact, since=0, timeout=WAIT):
        return self.expect(lambda l: l == exact, since, timeout, repr(exact))

    def expect_prefix(self, prefix, since=0, timeout=WAIT):
        return self.expect(lambda l: l.startswith(prefix), since, timeout, repr(prefix + "..."))

    def none_match(self, test, since=0):
        with self.cond:
            return [l for l in self.lines[since:] if test(l)]

    def wait_exit(self, timeout=15.0):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"{self.name} did not exit within {timeout:.0f} s")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def wait_for(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise Fail(f"timed out waiting for {what}")


def main():
    ns, seguro, runner = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    procs = []
    work = tempfile.mkdtemp(prefix="seguro-emb-")

    def start(name, argv):
        p = Proc(ns, name, argv, cwd=work)
        procs.append(p)
        return p

    def board(name, cert, port=PORT, extra=()):
        return start(name, [runner, TAP, CLIENT_CIDR, f"{SERVER_IP}:{port}", "--cert", cert, name, *extra])

    def serve(name, cert, key, port=PORT, extra=()):
        # Leaves are asserted as prompt: no reconnect grace. No name is reserved for its
        # key (--name-expiry 0), so a user back with another key gets in, as on a server
        # that does not reserve names or lies: the board must warn (the reservation itself
        # is tested in host-std/tests/v2_hello.rs).
        s = start(name, [seguro, "serve", "--bind", f"{SERVER_IP}:{port}", "--cert", cert, "--key", key,
                         "--reconnect-grace", "0", "--name-expiry", "0", *extra])
        s.expect(lambda l: "listening on" in l, what="'listening on'")
        return s

    def operstate():
        r = run("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{TAP}/operstate", check=False)
        return r.stdout.strip()

    try:
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        run("ip", "-n", ns, "addr", "add", f"{SERVER_IP}/24", "dev", TAP)
        run("ip", "-n", ns, "link", "set", TAP, "up")

        server_crt, server_key = f"{work}/server.crt", f"{work}/server.key"
        other_crt, other_key = f"{work}/other.crt", f"{work}/other.key"
        rsa_crt, rsa_key = f"{work}/rsa.crt", f"{work}/rsa.key"
        run(seguro, "gen-cert", "--cert", server_crt, "--key", server_key)
        run(seguro, "gen-cert", "--cert", other_crt, "--key", other_key)
        # The reference implementation's kind of certificate: RSA-2048.
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", rsa_key, "-out", rsa_crt,
            "-days", "2", "-nodes", "-subj", "/CN=servidor-local")

        print("== server and board client (with a flash image)", flush=True)
        server = serve("server", server_crt, server_key)
        flash = f"{work}/alice.flash"
        alice = board("alice", server_crt, extra=("--flash", flash))
        _, boot1 = alice.expect_prefix(f"[SYS] flash {flash}: boot 1, identity created (fp ")
        alice_fp = boot1.split("(fp ")[1].split(")")[0]
        # The runner attaches to the TAP; only then does the link come up.
        wait_for(lambda: operstate() == "up", f"{TAP} operstate up")
        alice.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as alice")

        print("== desktop client joins", flush=True)
        m = alice.mark()
        bob = start("bob", [seguro, "chat", "bob", SERVER_IP, str(PORT), "--cert", server_crt,
                            "--state-dir", f"{work}/state"])
        bob.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as bob")
        alice.expect_prefix("[SYS] bob joined, fp ", since=m)

        print("== /to both ways", flush=True)
        alice.send("/to bob hello from the board")
        bob.expect_line("[alice] hello from the board")
        bob.send("/to alice hi board, ünïcødé 🚀")
        alice.expect_line("[bob] hi board, ünïcødé 🚀")

        print("== /server", flush=True)
        alice.send("/server ping")
        alice.expect_line("[SERVER] echo: ping")

        print("== /list, fingerprints agree", flush=True)
        m = alice.mark()
        alice.send("/list")
        alice.expect_line("[SYS] users online (2):", since=m)
        _, own = alice.expect(lambda l: l.startswith("[SYS]   alice  fp ") and l.endswith(" (you)"),
                              since=m, what="alice's own entry")
        _, bob_seen = alice.expect_prefix("[SYS]   bob  fp ", since=m)
        m = bob.mark()
        bob.send("/list")
        bob.expect_line("[SYS] users online (2):", since=m)
        _, alice_seen = bob.expect_prefix("[SYS]   alice  fp ", since=m)
        _, bob_own = bob.expect(lambda l: l.startswith("[SYS]   bob  fp ") and l.endswith(" (you)"),
                                since=m, what="bob's own entry")
        if own.split(" fp ")[1].split()[0] != alice_seen.split(" fp ")[1].split()[0]:
            raise Fail(f"alice's fingerprint differs: {own!r} vs {alice_seen!r}")
        if bob_own.split(" fp ")[1].split()[0] != bob_seen.split(" fp ")[1].split()[0]:
            raise Fail(f"bob's fingerprint differs: {bob_own!r} vs {bob_seen!r}")

        print("== unknown user and bad command are reported, the session survives", flush=True)
        alice.send("/to nobody hi")
        alice.expect_line("[ERROR] unknown user: nobody (try /list)")
        alice.send("hello without a command")
        alice.expect_prefix("[ERROR] commands start with '/'")

        print("== server restart: the board reconnects", flush=True)
        ma, mb = alice.mark(), bob.mark()
        server.stop()
        alice.expect_prefix("[WARN] connection lost", since=ma)
        server = serve("server2", server_crt, server_key)
        alice.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as alice", since=ma, timeout=60)
        bob.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as bob", since=mb, timeout=60)
        deadline = time.monotonic() + WAIT
        while True:
            m = alice.mark()
            alice.send("/list")
            alice.expect_prefix("[SYS] users online (", since=m)
            try:
                alice.expect_prefix("[SYS]   bob  fp ", since=m, timeout=2)
                break
            except Fail:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        alice.send("/to bob back again")
        bob.expect_line("[alice] back again", since=mb)

        print("== a user back with another key: the board warns", flush=True)
        if alice.none_match(lambda l: l.startswith("[WARN]") and "KEY CHANGED" in l):
            raise Fail("the board warned about a key change although no key changed")
        ma = alice.mark()
        bob.send("/quit")
        bob.p.stdin.close()
        bob.wait_exit()
        alice.expect_line("[SYS] bob left", since=ma)
        # Another state directory: another identity under the same name.
        bob = start("bob2", [seguro, "chat", "bob", SERVER_IP, str(PORT), "--cert", server_crt,
                             "--state-dir", f"{work}/state2"])
        bob.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as bob")
        alice.expect_prefix("[SYS] bob joined, fp ", since=ma)
        _, warning = alice.expect_prefix("[WARN] KEY CHANGED for bob: fp was ", since=ma)
        if "verify the new fingerprint with bob" not in warning:
            raise Fail(f"no advice in {warning!r}")
        alice.send("/to bob is that you?")
        bob.expect_line("[alice] is that you?")

        print("== /quit", flush=True)
        mb = bob.mark()
        alice.send("/quit")
        if alice.wait_exit() != 0:
            raise Fail("the runner did not exit with 0 after /quit")
        bob.expect_line("[SYS] alice left", since=mb)

        print("== the board restarts with the same flash: same key, bob sees no warning", flush=True)
        alice = board("alice", server_crt, extra=("--flash", flash))
        alice.expect_line(f"[SYS] flash {flash}: boot 2, identity loaded (fp {alice_fp}), 1 contact(s)")
        alice.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as alice")
        bob.expect_line(f"[SYS] alice joined, fp {alice_fp}", since=mb)
        alice.send("/to bob same key after a reboot")
        bob.expect_line("[alice] same key after a reboot", since=mb)
        warned = bob.none_match(lambda l: l.startswith("[WARN]"), since=mb)
        if warned:
            raise Fail(f"bob warned about the restarted board: {warned}")
        # The board kept its contacts: bob (the second key) is known, nothing is said.
        alice.send("/trust")
        alice.expect(lambda l: l.startswith("[SYS]   bob  fp ") and l.endswith("  not verified"),
                     what="bob in /trust after the reboot")
        said = alice.none_match(lambda l: "new contact bob" in l or "KEY CHANGED" in l)
        if said:
            raise Fail(f"the rebooted board did not remember bob: {said}")
        print("== after the reboot, bob's first key again: the board reports the change", flush=True)
        ma = alice.mark()
        bob.send("/quit")
        bob.p.stdin.close()
        bob.wait_exit()
        alice.expect_line("[SYS] bob left", since=ma)
        bob = start("bob3", [seguro, "chat", "bob", SERVER_IP, str(PORT), "--cert", server_crt,
                             "--state-dir", f"{work}/state"])
        bob.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as bob")
        alice.expect_prefix("[WARN] KEY CHANGED for bob: fp was ", since=ma)
        if alice.none_match(lambda l: "new contact bob" in l, since=ma):
            raise Fail("the board took a changed key for a first contact after its reboot")
        mb = bob.mark()
        alice.send("/quit")
        if alice.wait_exit() != 0:
            raise Fail("the restarted runner did not exit with 0 after /quit")
        # Without the flash image the board is a new identity: bob does warn.
        mb = bob.mark()
        eve = board("alice", server_crt)
        eve.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as alice")
        bob.expect_prefix("[WARN] KEY CHANGED for alice: fp was ", since=mb)
        eve.send("/quit")
        eve.wait_exit()

        print("== a wrong pinned certificate is refused", flush=True)
        mb = bob.mark()
        carol = board("carol", other_crt)
        carol.expect_prefix("[ERROR] server refused: the server's certificate is not the pinned certificate")
        bad = carol.none_match(lambda l: l.startswith("[SYS] connected to") or l.startswith("[SYS] TLS"))
        if bad:
            raise Fail(f"carol got through: {bad}")
        carol.send("/quit")
        carol.wait_exit()
        if bob.none_match(lambda l: "carol" in l, since=mb):
            raise Fail("the server registered carol")

        print("== a board pinned by an invite: the server's key, the address from the invite",
              flush=True)

        def invite(cert):
            out = run(seguro, "invite", "--cert", cert, "--address", f"{SERVER_IP}:{PORT}").stdout
            return out.strip().splitlines()[-1]

        mb = bob.mark()
        gina = start("gina", [runner, TAP, CLIENT_CIDR, "--invite", invite(server_crt), "gina"])
        gina.expect_line(f"[SYS] connected to {SERVER_IP}:{PORT} as gina")
        bob.expect_prefix("[SYS] gina joined, fp ", since=mb)
        gina.send("/to bob pinned by key")
        bob.expect_line("[gina] pinned by key", since=mb)
        gina.send("/quit")
        if gina.wait_exit() != 0:
            raise Fail("gina did not exit with 0 after /quit")

        print("== an invite for another key is refused", flush=True)
        mb = bob.mark()
        hank = start("hank", [runner, TAP, CLIENT_CIDR, "--invite", invite(other_crt), "hank"])
        hank.expect_prefix("[ERROR] server refused: the server's key is not the pinned key")
        bad = hank.none_match(lambda l: l.startswith("[SYS] connected to") or l.startswith("[SYS] TLS"))
        if bad:
            raise Fail(f"hank got through: {bad}")
        hank.send("/quit")
        hank.wait_exit()
        if bob.none_match(lambda l: "hank" in l, since=mb):
            raise Fail("the server registered hank")

        print("== a server capping TLS fragments at 512 bytes, a board with a 529-byte record buffer",
              flush=True)
        serve("small", server_crt, server_key, port=SMALL_PORT, extra=("--max-fragment-size", "512"))
        frank = board("frank", server_crt, port=SMALL_PORT, extra=("--tls-read-buffer", "529"))
        frank.expect_line(f"[SYS] connected to {SERVER_IP}:{SMALL_PORT} as frank")
        # Lines longer than a record: each arrives in several records.
        text = " ".join(f"word{i:03d}-ñ" for i in range(80))
        frank.send(f"/to frank {text}")
        frank.expect_line(f"[frank] {text}")
        frank.send(f"/server {text}")
        frank.expect_line(f"[SERVER] echo: {text}")
        frank.send("/quit")
        if frank.wait_exit() != 0:
            raise Fail("frank did not exit with 0 after /quit")

        print("== RSA: a server with an RSA certificate, and an RSA pin", flush=True)
        serve("rsasrv", rsa_crt, rsa_key, port=RSA_PORT)
        dave = board("dave", server_crt, port=RSA_PORT)
        _, line = dave.expect_prefix("[ERROR] server refused: the server presented an RSA certificate")
        if "seguro gen-cert" not in line:
            raise Fail(f"no advice in {line!r}")
        dave.send("/quit")
        dave.wait_exit()
        erin = board("erin", rsa_crt, port=RSA_PORT)
        code = erin.wait_exit()
        _, line = erin.expect_prefix("[ERROR] the pinned certificate has an RSA key")
        if code == 0 or "P-256" not in line or "seguro gen-cert" not in line:
            raise Fail(f"RSA pin: exit {code}, {line!r}")

        bob.send("/quit")
        bob.p.stdin.close()
        bob.wait_exit()
        ok = True
    except (Fail, OSError, subprocess.SubprocessError) as e:
        print(f"FAIL: {e}", flush=True)
        ok = False
    finally:
        for p in procs:
            p.stop()
        for p in procs:
            p.reader.join(5)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"tap_e2e: {int(ok)} passed, {int(not ok)} failed", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
