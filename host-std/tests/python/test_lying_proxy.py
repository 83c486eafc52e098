"""A lying server (lying_proxy.py) in front of `seguro serve` and in front of peer.py's
reference server: replayed and reflected messages are flagged and never shown as
normal messages; a genuine message that repeats its text (new nonce) is still shown;
the memory survives a restart of the client. Through `seguro serve` two Seguro clients
talk protocol v2 (`relay2`): there the replays, reflections and forgeries are refused
by the ratchet, each reported as a [WARN] naming the peer and the reason. Through the
reference server they talk v1 (`relay`), refused by the v1 memories.

Run: SEGURO_BIN=target/debug/seguro python3 -m unittest discover -s host-std/tests/python -v
"""
import glob
import os
import sys
import time
import unittest

import test_interop
from test_interop import BIN, HERE

PROXY = os.path.join(HERE, "lying_proxy.py")
REPLAY_WARN = "[WARN] a message from %s was delivered again; the copy is not shown"
REFLECT_WARN = "[WARN] the server handed back one of your own messages to %s as if %s had sent it; refused"
V2_REFUSED = "[WARN] a protocol v2 message from %s was refused: "
V2_STALE = "message already received or too old (the server may be replaying it)"
V2_REFLECTED = "one of our own messages was handed back as the peer's (the server reflected it)"
V2_FORGED = "could not decrypt: authentication failed"


class LyingServer(test_interop.Interop):
    def proxy(self, upstream, crt, key, *modes):
        p = self.start([sys.executable, PROXY, "--upstream", str(upstream), "--cert", crt,
                        "--key", key] + list(modes))
        return self.port_of(p)

    def client(self, user, port, crt, *extra):
        """A seguro client with its own state (identity, contacts, nonce memories)."""
        c = self.start([BIN, "chat", user, "127.0.0.1", str(port), "--cert", crt,
                        "--state-dir", self.path("state-" + user), *extra])
        c.wait_for("[SYS] connected to 127.0.0.1:%d as %s" % (port, user))
        return c

    def upstream(self, kind, crt, key):
        return self.seguro_server(crt, key) if kind == "seguro" else self.python_server(crt, key)

    def v2_warn(self, peer, why):
        return V2_REFUSED % peer + why + "; not shown"

    def replay_warn(self, kind, peer):
        return self.v2_warn(peer, V2_STALE) if kind == "seguro" else REPLAY_WARN % peer

    def exchange(self, port, crt):
        """ana and beto exchange uno (beto), dos (ana), tres (beto) and the receipts."""
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana uno")
        a.wait_exact("[beto] uno")
        a.send("/to beto dos")
        b.wait_exact("[ana] dos")
        b.send("/to ana tres")
        a.wait_exact("[beto] tres")
        a.wait_exact("[SYS] beto received your message: dos")
        b.wait_exact("[SYS] ana received your message: uno")
        b.wait_exact("[SYS] ana received your message: tres")
        return a, b

    def count(self, proc, line):
        return sum(1 for l in proc.lines if l == line)

    # ---- replay

    def check_replay(self, kind):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream(kind, crt, key), crt, key, "--replay")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana otra vez")
        a.wait_exact("[beto] otra vez")
        a.wait_for(self.replay_warn(kind, "beto"))
        # The same text again is a new message (new nonce): shown again.
        b.send("/to ana otra vez")
        a.wait(lambda l: self.count(a, "[beto] otra vez") == 2, "the second genuine message")
        b.send("/to ana fin")
        a.wait_exact("[beto] fin")
        time.sleep(0.5)  # any late copy would have arrived with "fin"'s
        self.assertEqual(self.count(a, "[beto] otra vez"), 2, "\n".join(a.lines))
        self.assertEqual(self.count(a, "[beto] fin"), 1, "\n".join(a.lines))
        if kind == "seguro":
            # v2: every copy refused by the ratchet, each said.
            warns = [l for l in a.lines if l == self.v2_warn("beto", V2_STALE)]
            self.assertEqual(len(warns), 3, "\n".join(a.lines))
            self.assertIn("[SYS] conversation with beto: protocol v2", a.lines)
        else:
            # Three copies, one warning: rate-limited.
            warns = [l for l in a.lines if l.startswith(REPLAY_WARN % "beto")]
            self.assertEqual(len(warns), 1, "\n".join(a.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_replay_through_seguro_serve(self):
        self.check_replay("seguro")

    def test_replay_through_the_python_server(self):
        self.check_replay("python")

    # ---- reflection

    def check_reflection(self, kind):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream(kind, crt, key), crt, key, "--reflect")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        # The reference server pushes no joins: beto writes first so ana learns of him.
        b.send("/to ana hola")
        a.wait_exact("[beto] hola")
        a.send("/to beto mi secreto")
        b.wait_exact("[ana] mi secreto")
        if kind == "seguro":
            a.wait_exact(self.v2_warn("beto", V2_REFLECTED))
            b.wait_exact(self.v2_warn("ana", V2_REFLECTED))  # beto's "hola" too
        else:
            a.wait_for(REFLECT_WARN % ("beto", "beto"))
            b.wait_for(REFLECT_WARN % ("ana", "ana"))  # beto's "hola" came back to him too
        b.send("/to ana fin")
        a.wait_exact("[beto] fin")
        self.assertNotIn("[beto] mi secreto", a.lines)
        self.assertNotIn("[ana] hola", b.lines)
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_reflection_through_seguro_serve(self):
        self.check_reflection("seguro")

    def test_reflection_through_the_python_server(self):
        self.check_reflection("python")

    # ---- restart

    def check_restart(self, kind):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream(kind, crt, key), crt, key, "--replay-old")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana antes del reinicio")
        a.wait_exact("[beto] antes del reinicio")
        self.assertEqual(a.finish(), 0)
        # ana comes back with the same state: the proxy delivers the old relay again.
        a = self.client("ana", port, crt)
        b.send("/to ana despues")
        a.wait_exact("[beto] despues")
        a.wait_for(self.replay_warn(kind, "beto"))
        self.assertNotIn("[beto] antes del reinicio", a.lines)
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_restart_keeps_the_memory_seguro_serve(self):
        self.check_restart("seguro")

    def test_restart_keeps_the_memory_python_server(self):
        self.check_restart("python")

    # ---- substitution (protocol v2 only: v1 through the reference is covered by e2e)

    def test_forged_v2_messages_are_refused_and_the_genuine_ones_shown(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--substitute")
        # The first message (the session's setup) and later ones, both ways.
        a, b = self.exchange(port, crt)
        time.sleep(0.5)
        # Each relay2 came forged first: to ana two texts and a receipt, to beto a text
        # and two receipts.
        forged = self.v2_warn("beto", V2_FORGED)
        self.assertEqual(self.count(a, forged), 3, "\n".join(a.lines))
        self.assertEqual(self.count(b, self.v2_warn("ana", V2_FORGED)), 3, "\n".join(b.lines))
        for line in ("[beto] uno", "[beto] tres"):
            self.assertEqual(self.count(a, line), 1, "\n".join(a.lines))
        self.assertEqual(self.count(b, "[ana] dos"), 1, "\n".join(b.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_malformed_v2_messages_are_each_reported_and_the_genuine_ones_shown(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--garble")
        a, b = self.exchange(port, crt)
        time.sleep(0.5)
        # Each relay2 came after four bad ones: to ana two texts and a receipt, to
        # beto a text and two receipts.
        for p, peer, n in ((a, "beto", 3), (b, "ana", 3)):
            log = "\n".join(p.lines)
            self.assertEqual(self.count(p, "[WARN] the server sent a protocol v2 message "
                                           "without a sender: not shown"), n, log)
            self.assertEqual(self.count(p, self.v2_warn(peer, "its body is not base64")), n, log)
            self.assertEqual(self.count(p, self.v2_warn(
                "nadie", "the sender is not listed as a protocol v2 user")), n, log)
            short = [l for l in p.lines if l.startswith(V2_REFUSED % peer)
                     and "base64" not in l]
            self.assertEqual(len(short), n, log)
            # Nothing else is shown as a message; the session goes on.
            shown = [l for l in p.lines if l.startswith("[") and l.split("]")[0] in
                     ("[beto", "[ana", "[nadie")]
            want = ["[beto] uno", "[beto] tres"] if peer == "beto" else ["[ana] dos"]
            self.assertEqual(shown, want, log)
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_substituted_prekey_bundles_are_refused_and_the_texts_said_not_sent(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--bad-bundle")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        m = self.client("marta", port, crt)
        a.wait_for("[SYS] marta joined")
        a.send("/to beto hola")
        a.wait(lambda l: l.startswith("[WARN] no protocol v2 session with beto: the peer's "
                                      "prekey bundle is refused: "), "the refused bundle")
        a.wait(lambda l: l.startswith("[WARN] message to beto NOT sent") and l.endswith(": hola"),
               "the text said not sent")
        a.send("/to marta hola")
        a.wait(lambda l: l.startswith("[WARN] no protocol v2 session with marta: the server's "
                                      "prekey bundle for marta has other keys than its "
                                      "directory"), "the substituted identity")
        a.wait(lambda l: l.startswith("[WARN] message to marta NOT sent") and l.endswith(": hola"),
               "the text said not sent")
        time.sleep(0.5)
        # Nothing went out as v1 instead, nothing arrived.
        self.assertNotIn("[ana] hola", b.lines)
        self.assertNotIn("[ana] hola", m.lines)
        for p in (a, b, m):
            self.assertEqual(p.finish(), 0)

    def test_a_directory_that_hides_v2_is_a_downgrade_refused_until_accept_v1(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--strip-v2-later")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana uno")
        a.wait_exact("[beto] uno")
        a.send("/to beto dos")
        b.wait_exact("[ana] dos")
        self.assertEqual(a.finish(), 0)
        # ana's second connection: the directory lists beto as a v1 client.
        a = self.client("ana", port, crt)
        a.send("/to beto tres")
        a.wait_exact("[WARN] beto used protocol v2 before; this connection offers only v1 "
                     "— the server may be downgrading you. /accept-v1 beto to send with v1 "
                     "anyway: NOT sent: tres")
        # beto still talks v2 with ana: the stored session opens it.
        b.send("/to ana cuatro")
        a.wait_exact("[beto] cuatro")
        a.send("/accept-v1 beto")
        a.wait(lambda l: l.startswith("[WARN] this drops the protocol v2 session with beto")
               and l.endswith("Type /accept-v1 beto yes to confirm"), "the confirmation")
        a.send("/accept-v1 beto yes")
        a.wait(lambda l: l.startswith("[SYS] the protocol v2 session with beto is dropped"),
               "the session dropped")
        a.send("/to beto cinco")
        a.wait_exact("[SYS] conversation with beto: protocol v1 (beto's client speaks v1)")
        # beto gets it as v1, with the same warning: he has a v2 session with ana.
        b.wait(lambda l: l.startswith("[WARN] ana used protocol v2 before; the message below "
                                      "came with v1"), "the downgrade warning")
        b.wait_exact("[ana] cinco")
        self.assertNotIn("[beto] tres", b.lines)
        self.assertEqual(self.count(b, "[ana] tres"), 0, "\n".join(b.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_the_trust_store_remembers_v2_when_the_session_file_is_lost(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--strip-v2-later")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana uno")
        a.wait_exact("[beto] uno")
        self.assertEqual(a.finish(), 0)
        sessions = glob.glob(os.path.join(self.path("state-ana"), "users", "*",
                                          "v2-session.*"))
        self.assertEqual(len(sessions), 1, sessions)
        os.remove(sessions[0])
        # No session any more, and a directory without v2: the trust store's mark
        # still refuses the fall-back.
        a = self.client("ana", port, crt)
        a.send("/trust")
        a.wait_exact("[SYS] protocol v2 used with: beto (no fall-back to v1 with them without "
                     "/accept-v1 <user>)")
        a.send("/to beto dos")
        a.wait_exact("[WARN] beto used protocol v2 before; this connection offers only v1 "
                     "— the server may be downgrading you. /accept-v1 beto to send with v1 "
                     "anyway: NOT sent: dos")
        a.send("/accept-v1 beto yes")
        a.wait(lambda l: l.startswith("[SYS] the protocol v2 session with beto is dropped"),
               "the mark dropped")
        a.send("/trust")
        a.wait_exact("[SYS] protocol v2: not used with anyone yet")
        a.send("/to beto tres")
        a.wait_exact("[SYS] conversation with beto: protocol v1 (beto's client speaks v1)")
        b.wait_exact("[ana] tres")
        self.assertNotIn("[ana] dos", b.lines)
        self.assertEqual(a.finish(), 0)
        # Cleared for good: a third connection sends with v1 at once.
        a = self.client("ana", port, crt)
        a.send("/to beto cuatro")
        b.wait_exact("[ana] cuatro")
        self.assertFalse([l for l in a.lines if "downgrading" in l], "\n".join(a.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_another_signing_key_for_a_known_fingerprint_is_reported(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, "--swap-ed-later")
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana uno")
        a.wait_exact("[beto] uno")
        warn = ("[WARN] the server lists beto with another protocol v2 signing key (Ed25519) "
                "than the one beto used before, with the same X25519 key (the fingerprint): "
                "the server may be substituting it; sessions set up with it fail to "
                "authenticate")
        self.assertNotIn(warn, a.lines)
        self.assertEqual(a.finish(), 0)
        a = self.client("ana", port, crt)
        a.wait_exact(warn)
        # The fingerprint (X25519) did not change: no key-change warning of v1's kind.
        self.assertFalse([l for l in a.lines if "CHANGED" in l.upper()], "\n".join(a.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    # ---- short authentication strings (protocol v2 §9)

    def codes(self, p, peer):
        """The codes `p` shows for `peer` (emoji and numbers), once shown."""
        head = "[SYS] compare with %s: " % peer
        line = p.wait(lambda l: l.startswith(head), "the codes for " + peer)
        return line[len(head):line.index(" The same on both screens?")]

    def trusted(self, p, peer, verified):
        """`/trust` lists `peer` as verified (or not)."""
        p.send("/trust")
        want = "  verified" if verified else "  not verified"
        p.wait(lambda l: l.startswith("[SYS]   %s  fp " % peer) and l.endswith(want),
               "%s%s in /trust" % (peer, want))

    def check_sas(self, *modes):
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key, *modes)
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        a.wait_for("[SYS] beto joined")
        a.send("/sas beto")
        a.wait_exact("[ERROR] no protocol v2 session with beto yet: send beto a message "
                     "first, then /sas beto")
        a.send("/to beto hola")
        b.wait_exact("[ana] hola")
        a.send("/sas beto")
        b.wait_exact("[SYS] ana asks to verify you by short codes: the codes appear in a "
                     "moment (/sas ana no to refuse)")
        ca, cb = self.codes(a, "beto"), self.codes(b, "ana")
        self.assertEqual(ca, cb)
        self.assertRegex(ca, r"^(\S+ [A-Z][A-Za-z ]+, ){6}\S+ [A-Z][A-Za-z ]+ — or the "
                             r"numbers \d{4} \d{4} \d{4}\.$")
        self.trusted(a, "beto", False)
        b.send("/sas ana yes")
        b.wait_exact("[SYS] you confirmed the codes with ana: waiting for ana to confirm")
        a.wait_exact("[SYS] beto says the codes match; if they match on your screen too: "
                     "/sas beto yes")
        a.send("/sas beto yes")
        a.wait_exact("[SYS] beto is verified: the short codes matched on both screens")
        b.wait_exact("[SYS] ana is verified: the short codes matched on both screens")
        self.trusted(a, "beto", True)
        self.trusted(b, "ana", True)
        # Codes that differ on one screen: the other side is told, nobody is verified
        # by that run.
        b.send("/sas ana")
        a.wait(lambda _: sum(1 for l in a.lines if l.startswith("[SYS] compare with beto: "))
               == 2, "the second run's codes")
        a.send("/sas beto no")
        a.wait(lambda l: l.startswith("[WARN] the codes differ: this verification of beto "
                                      "failed"), "the mismatch")
        b.wait_exact("[WARN] ana cancelled the verification (the codes differ on their "
                     "screen): it does NOT verify them")
        a.send("/sas beto yes")
        a.wait_exact("[ERROR] no verification with beto is running: /sas beto starts one")
        return a, b

    def test_short_codes_match_on_both_screens_and_verify_both(self):
        a, b = self.check_sas()
        self.assertFalse([l for l in a.lines + b.lines if l.startswith("[WARN] a protocol v2")],
                         "\n".join(a.lines + b.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_short_codes_through_a_replaying_server_still_verify_once(self):
        a, b = self.check_sas("--replay")
        # Every SAS message came twice: each copy refused by the ratchet, never acted on.
        for p, peer in ((a, "beto"), (b, "ana")):
            self.assertGreaterEqual(self.count(p, self.v2_warn(peer, V2_STALE)), 3,
                                    "\n".join(p.lines))
            self.assertEqual(self.count(p, "[SYS] %s is verified: the short codes matched "
                                           "on both screens" % peer), 1, "\n".join(p.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def sas_pair(self, *extra):
        """ana (with `extra` arguments) and beto through an honest proxy, with a v2
        session each way."""
        crt, key = self.seguro_pair()
        port = self.proxy(self.upstream("seguro", crt, key), crt, key)
        a = self.client("ana", port, crt, *extra)
        b = self.client("beto", port, crt)
        a.wait_for("[SYS] beto joined")
        a.send("/to beto hola")
        b.wait_exact("[ana] hola")
        b.send("/to ana hola")
        a.wait_exact("[beto] hola")
        return a, b

    def test_short_codes_started_by_both_at_once_still_verify(self):
        a, b = self.sas_pair()
        # Both type /sas at (nearly) the same moment: the two starts cross on the wire.
        # Both clients keep the same one of the two runs instead of each taking the
        # other's and waiting forever.
        a.send("/sas beto")
        b.send("/sas ana")
        ca, cb = self.codes(a, "beto"), self.codes(b, "ana")
        self.assertEqual(ca, cb)
        a.send("/sas beto yes")
        b.send("/sas ana yes")
        a.wait_exact("[SYS] beto is verified: the short codes matched on both screens")
        b.wait_exact("[SYS] ana is verified: the short codes matched on both screens")
        self.trusted(a, "beto", True)
        self.trusted(b, "ana", True)
        warns = [l for l in a.lines + b.lines if l.startswith("[WARN]")]
        self.assertFalse(warns, "\n".join(a.lines + b.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    def test_a_verification_left_unanswered_is_cancelled_on_both_sides(self):
        a, b = self.sas_pair("--sas-timeout-ms", "2000")
        a.send("/sas beto")
        self.assertEqual(self.codes(a, "beto"), self.codes(b, "ana"))
        # Asking again while one runs would replace the codes on both screens: refused.
        b.send("/sas ana")
        b.wait_exact("[ERROR] a verification with ana is already running: compare the codes "
                     "when they appear (/sas ana no stops it)")
        # Nobody confirms: after ana's time (2 s here, 10 minutes normally) the run stops
        # on both screens and verifies nobody.
        a.wait_exact("[WARN] the verification with beto took more than 2 seconds and "
                     "stopped: it does NOT verify them (/sas beto starts another)")
        b.wait_exact("[WARN] ana cancelled the verification (it took too long): it does NOT "
                     "verify them")
        b.send("/sas ana yes")
        b.wait_exact("[ERROR] no verification with ana is running: /sas ana starts one")
        self.trusted(a, "beto", False)
        self.trusted(b, "ana", False)
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)

    # ---- control: the proxy itself is honest without modes

    def test_an_honest_proxy_changes_nothing(self):
        crt, key = self.seguro_pair()
        port = self.proxy(self.seguro_server(crt, key), crt, key)
        a = self.client("ana", port, crt)
        b = self.client("beto", port, crt)
        b.send("/to ana uno")
        b.send("/to ana uno")
        a.wait(lambda l: self.count(a, "[beto] uno") == 2, "two messages")
        self.assertFalse([l for l in a.lines if l.startswith("[WARN]")], "\n".join(a.lines))
        self.assertEqual(a.finish(), 0)
        self.assertEqual(b.finish(), 0)


# Interop's own tests run from test_interop; not again here.
for name in [n for n in dir(test_interop.Interop) if n.startswith("test_")]:
    setattr(LyingServer, name, None)

if __name__ == "__main__":
    unittest.main()
