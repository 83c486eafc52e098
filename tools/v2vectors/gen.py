#!/usr/bin/env python3
"""Test vectors for Seguro protocol v2 (docs/protocol-v2.md), from an independent
implementation: Python with pyca/cryptography for X25519, Ed25519, HKDF, HMAC, SHA-256
and AES-256-GCM. Deterministic: every secret comes from a seeded HMAC-SHA256 stream, so
re-running writes the same files byte for byte.

    python3 tools/v2vectors/gen.py            # writes core/tests/vectors/v2/*.json
    python3 tools/v2vectors/gen.py --check    # fails if the files on disk differ
"""

import base64
import hashlib
import hmac
import json
import pathlib
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "core" / "tests" / "vectors" / "v2"

Z32 = bytes(32)
VERSION = 0x02
MAX_SKIP = 256
RING = 32
NO_OPK = 0xFFFFFFFF
FLAG_PRELUDE = 0x01
FLAG_RESPONDER = 0x02


def label(s):
    return b"seguro/v2/" + s.encode() + b"\x00"


def lp(name):
    b = name.encode()
    assert 1 <= len(b) <= 128
    return bytes([len(b)]) + b


def u32(n):
    return struct.pack(">I", n)


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def sha256(b):
    return hashlib.sha256(b).digest()


class Stream:
    """Deterministic bytes: HMAC-SHA256(seed, label || counter)."""

    def __init__(self, seed):
        self.seed = seed.encode()

    def take(self, what, n=32):
        out = b""
        i = 0
        while len(out) < n:
            out += hmac256(self.seed, what.encode() + b"\x00" + u32(i))
            i += 1
        return out[:n]


def x_pub(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x_dh(secret, public):
    out = X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(public))
    assert out != Z32
    return out


def ed_pub(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed_sign(seed, msg):
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


def ed_verify(pub, sig, msg):
    Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)


def h(b):
    return b.hex()


class Identity:
    def __init__(self, rng, name):
        self.name = name
        self.x_secret = rng.take(name + "/ik")
        self.ed_seed = rng.take(name + "/ed")
        self.x = x_pub(self.x_secret)
        self.ed = ed_pub(self.ed_seed)

    def bind_msg(self):
        return label("identity") + lp(self.name) + self.x + self.ed

    def bind(self):
        return ed_sign(self.ed_seed, self.bind_msg())


def spk_msg(spk_id, spk):
    return label("spk") + u32(spk_id) + spk


def binding_hash(ini, res):
    return sha256(label("ad") + ini.x + ini.ed + res.x + res.ed + lp(ini.name) + lp(res.name))


def kdf_rk(rk, dh):
    okm = hkdf(rk, dh, b"seguro/v2/root", 64)
    return okm[:32], okm[32:]


def kdf_ck(ck):
    return hmac256(ck, b"\x01"), hmac256(ck, b"\x02")


def message_keys(mk):
    okm = hkdf(Z32, mk, b"seguro/v2/message", 44)
    return okm[:32], okm[32:]


def header(flags, dh, pn, n):
    return bytes([VERSION, flags]) + dh + u32(pn) + u32(n)


def x3dh_initiator(ini, ek_secret, bundle_x, spk, opk):
    dh1 = x_dh(ini.x_secret, spk)
    dh2 = x_dh(ek_secret, bundle_x)
    dh3 = x_dh(ek_secret, spk)
    dhs = [dh1, dh2, dh3]
    if opk is not None:
        dhs.append(x_dh(ek_secret, opk))
    sk = hkdf(Z32, b"\xff" * 32 + b"".join(dhs), b"seguro/v2/x3dh", 32)
    return dhs, sk


def x3dh_responder(res, spk_secret, opk_secret, ini_x, ek):
    dhs = [x_dh(spk_secret, ini_x), x_dh(res.x_secret, ek), x_dh(spk_secret, ek)]
    if opk_secret is not None:
        dhs.append(x_dh(opk_secret, ek))
    return hkdf(Z32, b"\xff" * 32 + b"".join(dhs), b"seguro/v2/x3dh", 32)


class Refused(Exception):
    pass


class Session:
    """The Double Ratchet as docs/protocol-v2.md §6–§7 describes it."""

    def __init__(self, role, sk, binding):
        self.role = role  # 0 initiator, 1 responder
        self.rk = sk
        self.binding = binding
        self.dhs = None  # (secret, public) or None
        self.dhr = None
        self.cks = None
        self.ckr = None
        self.ns = self.nr = self.pn = 0
        self.prelude = None
        self.prev_tag = None
        self.ring = [None] * RING  # (dh_tag, n, mk)
        self.head = 0

    def seal(self, inner, rng_secret=None):
        """rng_secret: the 32 bytes the host's RNG yields if a new ratchet key is needed."""
        drawn = None
        if self.cks is None:
            assert rng_secret is not None
            drawn = rng_secret
            pub = x_pub(rng_secret)
            self.dhs = (rng_secret, pub)
            self.rk, self.cks = kdf_rk(self.rk, x_dh(rng_secret, self.dhr))
            self.pn = self.ns
            self.ns = 0
        mk, self.cks = kdf_ck(self.cks)
        flags = (FLAG_RESPONDER if self.role == 1 else 0) | (FLAG_PRELUDE if self.prelude else 0)
        hdr = header(flags, self.dhs[1], self.pn, self.ns) + (self.prelude or b"")
        self.ns += 1
        key, nonce = message_keys(mk)
        ct = AESGCM(key).encrypt(nonce, inner, self.binding + hdr)
        return hdr + ct, drawn

    def _store(self, tag, n, mk):
        self.ring[self.head] = (tag, n, mk)
        self.head = (self.head + 1) % RING

    def open(self, wire):
        if len(wire) < 42 + 16:
            raise Refused("TooShort")
        if wire[0] != VERSION:
            raise Refused("UnsupportedVersion")
        flags = wire[1]
        if flags & ~0x03:
            raise Refused("BadFlags")
        hlen = 42 + (40 if flags & FLAG_PRELUDE else 0)
        if len(wire) < hlen + 16:
            raise Refused("TooShort")
        if bool(flags & FLAG_RESPONDER) == (self.role == 1):
            raise Refused("Reflected")
        dh = wire[2:34]
        pn, n = struct.unpack(">II", wire[34:42])
        hdr, ct = wire[:hlen], wire[hlen:]
        ad = self.binding + hdr

        def dec(mk):
            key, nonce = message_keys(mk)
            try:
                return AESGCM(key).decrypt(nonce, ct, ad)
            except Exception:
                raise Refused("Decrypt")

        for i, e in enumerate(self.ring):
            if e is not None and e[0] == dh[:8] and e[1] == n:
                pt = dec(e[2])
                self.ring[i] = None
                return self._received(pt)
        if self.dhr is not None and dh == self.dhr:
            if self.ckr is None or n < self.nr:
                raise Refused("Stale")
            if n - self.nr > MAX_SKIP:
                raise Refused("TooFarAhead")
            ck = self.ckr
            for _ in range(self.nr, n):
                _, ck = kdf_ck(ck)
            mk, ck_next = kdf_ck(ck)
            pt = dec(mk)
            ck = self.ckr
            for i in range(self.nr, n):
                skipped, ck = kdf_ck(ck)
                self._store(self.dhr[:8], i, skipped)
            self.ckr, self.nr = ck_next, n + 1
            return self._received(pt)
        # The previous receiving chain: its remaining keys are all in the ring.
        if self.prev_tag is not None and dh[:8] == self.prev_tag:
            raise Refused("Stale")
        # A new ratchet key.
        if self.dhs is None:
            raise Refused("UnexpectedRatchetKey")
        if self.ckr is not None and pn > self.nr and pn - self.nr > MAX_SKIP:
            raise Refused("TooFarAhead")
        if n > MAX_SKIP:
            raise Refused("TooFarAhead")
        rk, ck_new = kdf_rk(self.rk, x_dh(self.dhs[0], dh))
        ck = ck_new
        for _ in range(n):
            _, ck = kdf_ck(ck)
        mk, ck_next = kdf_ck(ck)
        pt = dec(mk)
        if self.ckr is not None:
            ck = self.ckr
            for i in range(self.nr, pn):
                skipped, ck = kdf_ck(ck)
                self._store(self.dhr[:8], i, skipped)
        ck = ck_new
        for i in range(n):
            skipped, ck = kdf_ck(ck)
            self._store(dh[:8], i, skipped)
        if self.dhr is not None:
            self.prev_tag = self.dhr[:8]
        self.rk, self.dhr, self.ckr, self.nr = rk, dh, ck_next, n + 1
        self.dhs, self.cks = None, None
        return self._received(pt)

    def _received(self, pt):
        self.prelude = None
        return pt


def text_inner(msg_id, text):
    return b"\x01" + u32(msg_id) + text.encode()


def receipt_inner(ids):
    assert 1 <= len(ids) <= 16
    return b"\x02" + bytes([len(ids)]) + b"".join(u32(i) for i in ids)


def sas_code(b):
    n1 = ((b[0] << 5) | (b[1] >> 3)) + 1000
    n2 = (((b[1] & 7) << 10) | (b[2] << 2) | (b[3] >> 6)) + 1000
    n3 = (((b[3] & 0x3F) << 7) | (b[4] >> 1)) + 1000
    bits = int.from_bytes(b[:6], "big") >> 6
    emoji = [(bits >> (6 * (6 - i))) & 0x3F for i in range(7)]
    return [n1, n2, n3], emoji


def gen_identity(rng):
    cases = []
    for name in ["alice", "bob", "José_Ñandú-🚀", "x" * 32]:
        ident = Identity(rng, name)
        bind = ident.bind()
        ed_verify(ident.ed, bind, ident.bind_msg())
        cases.append({
            "name": name, "x_secret": h(ident.x_secret), "x_public": h(ident.x),
            "ed_seed": h(ident.ed_seed), "ed_public": h(ident.ed),
            "bind_msg": h(ident.bind_msg()), "bind": h(bind),
        })
    # A binding must not verify under another name or with a flipped bit.
    a = Identity(rng, "alice")
    bad = bytearray(a.bind())
    bad[10] ^= 1
    return {"cases": cases, "negative": [
        {"name": "mallory", "x_public": h(a.x), "ed_public": h(a.ed), "bind": h(a.bind()),
         "why": "signed for alice"},
        {"name": "alice", "x_public": h(a.x), "ed_public": h(a.ed), "bind": h(bytes(bad)),
         "why": "signature bit flipped"},
        {"name": "alice", "x_public": h(x_pub(rng.take("other-x"))), "ed_public": h(a.ed),
         "bind": h(a.bind()), "why": "another X25519 key"},
    ]}


def gen_hello(rng):
    cases = []
    for name in ["alice", "carol"]:
        ident = Identity(rng, name)
        spki = sha256(b"server SubjectPublicKeyInfo of " + name.encode())
        nonce = rng.take(name + "/hello-nonce")
        e_s = rng.take(name + "/server-eph")
        E_s = x_pub(e_s)
        p = label("hello") + spki + nonce + E_s + lp(name) + ident.x + ident.ed
        sig = ed_sign(ident.ed_seed, p)
        dh = x_dh(ident.x_secret, E_s)
        assert dh == x_dh(e_s, ident.x)
        k = hkdf(nonce, dh, b"seguro/v2/hello-mac", 32)
        cases.append({
            "name": name, "x_secret": h(ident.x_secret), "x_public": h(ident.x),
            "ed_seed": h(ident.ed_seed), "ed_public": h(ident.ed), "spki": h(spki),
            "nonce": h(nonce), "server_eph_secret": h(e_s), "server_eph_public": h(E_s),
            "proof_input": h(p), "dh": h(dh), "mac_key": h(k), "sig": h(sig),
            "mac": h(hmac256(k, p)),
        })
    return {"cases": cases}


def gen_prekeys(rng):
    cases = []
    for i, spk_id in enumerate([1, 7, 0xFFFFFFFE]):
        ident = Identity(rng, "bob")
        spk_secret = rng.take(f"spk{i}")
        spk = x_pub(spk_secret)
        msg = spk_msg(spk_id, spk)
        cases.append({"ed_seed": h(ident.ed_seed), "ed_public": h(ident.ed), "spk_id": spk_id,
                      "spk_secret": h(spk_secret), "spk_public": h(spk), "msg": h(msg),
                      "sig": h(ed_sign(ident.ed_seed, msg))})
    return {"cases": cases}


def gen_kdf(rng):
    rk, dh, ck, mk = (rng.take(s) for s in ["rk", "dh", "ck", "mk"])
    nrk, nck = kdf_rk(rk, dh)
    cmk, cck = kdf_ck(ck)
    key, nonce = message_keys(mk)
    hdrs = []
    for flags, pn, n, prelude in [(0, 0, 0, None), (FLAG_RESPONDER, 3, 70000, None),
                                  (FLAG_PRELUDE, 0, 1, rng.take("ek") + u32(7) + u32(NO_OPK))]:
        dhp = x_pub(rng.take(f"hdr{n}"))
        hb = header(flags, dhp, pn, n) + (prelude or b"")
        binding = rng.take(f"binding{n}")
        hdrs.append({"flags": flags, "dh": h(dhp), "pn": pn, "n": n,
                     "prelude": h(prelude) if prelude else None, "bytes": h(hb),
                     "binding": h(binding), "ad": h(binding + hb)})
    return {"kdf_rk": {"rk": h(rk), "dh": h(dh), "new_rk": h(nrk), "ck": h(nck)},
            "kdf_ck": {"ck": h(ck), "mk": h(cmk), "next_ck": h(cck)},
            "message_keys": {"mk": h(mk), "key": h(key), "nonce": h(nonce)},
            "headers": hdrs}


def setup(rng, tag, with_opk):
    alice, bob = Identity(rng, "alice"), Identity(rng, "bob")
    spk_id, opk_id = 7, 12
    spk_secret = rng.take(tag + "/spk")
    opk_secret = rng.take(tag + "/opk") if with_opk else None
    ek = rng.take(tag + "/ek")
    spk = x_pub(spk_secret)
    opk = x_pub(opk_secret) if with_opk else None
    dhs, sk = x3dh_initiator(alice, ek, bob.x, spk, opk)
    assert sk == x3dh_responder(bob, spk_secret, opk_secret, alice.x, x_pub(ek))
    binding = binding_hash(alice, bob)
    a = Session(0, sk, binding)
    a.dhr = spk
    a.prelude = x_pub(ek) + u32(spk_id) + u32(opk_id if with_opk else NO_OPK)
    b = Session(1, sk, binding)
    b.dhs = (spk_secret, spk)
    v = {
        "alice": {"name": alice.name, "x_secret": h(alice.x_secret), "x_public": h(alice.x),
                  "ed_seed": h(alice.ed_seed), "ed_public": h(alice.ed), "bind": h(alice.bind())},
        "bob": {"name": bob.name, "x_secret": h(bob.x_secret), "x_public": h(bob.x),
                "ed_seed": h(bob.ed_seed), "ed_public": h(bob.ed), "bind": h(bob.bind())},
        "spk_id": spk_id, "spk_secret": h(spk_secret), "spk_public": h(spk),
        "spk_sig": h(ed_sign(bob.ed_seed, spk_msg(spk_id, spk))),
        "opk_id": opk_id if with_opk else None, "opk_secret": h(opk_secret) if with_opk else None,
        "opk_public": h(opk) if with_opk else None,
        "ek_secret": h(ek), "ek_public": h(x_pub(ek)),
        "dh": [h(d) for d in dhs], "sk": h(sk), "binding": h(binding),
    }
    return v, a, b


def gen_x3dh(rng):
    out = []
    for tag, with_opk in [("x3dh-opk", True), ("x3dh-no-opk", False)]:
        v, a, b = setup(rng, tag, with_opk)
        first = rng.take(tag + "/ratchet-a0")
        inner = text_inner(1, "first message, " + tag)
        wire, _ = a.seal(inner, first)
        assert b.open(wire) == inner
        v.update({"initiator_ratchet_secret": h(first), "first_inner": h(inner),
                  "first_wire": h(wire)})
        out.append(v)
    return {"cases": out}


def gen_ratchet(rng):
    v, a, b = setup(rng, "ratchet", True)
    sessions = {"alice": a, "bob": b}
    counters = {"alice": 0, "bob": 0}
    sent = []  # (from, index within sender, wire)
    events = []

    def send(who, text):
        s = sessions[who]
        counters[who] += 1
        inner = text_inner(counters[who], text)
        secret = rng.take(f"ratchet/{who}/{len(events)}") if s.cks is None else None
        wire, drawn = s.seal(inner, secret)
        sent.append({"from": who, "inner": inner, "wire": wire})
        events.append({"op": "seal", "by": who, "msg": len(sent) - 1, "inner": h(inner),
                       "rng": h(drawn) if drawn else None, "wire": h(wire)})
        return len(sent) - 1

    def deliver(i, expect="ok"):
        m = sent[i]
        to = "bob" if m["from"] == "alice" else "alice"
        try:
            got = sessions[to].open(m["wire"])
            result = "ok"
            assert got == m["inner"]
        except Refused as e:
            result = str(e)
        assert result == expect, (i, result, expect)
        events.append({"op": "open", "by": to, "msg": i, "expect": expect})

    def deliver_raw(to, wire, expect):
        try:
            sessions[to].open(wire)
            result = "ok"
        except Refused as e:
            result = str(e)
        assert result == expect, (result, expect)
        events.append({"op": "open_raw", "by": to, "wire": h(wire), "expect": expect})

    m0 = send("alice", "hello bob")
    m1 = send("alice", "are you there?")
    m2 = send("alice", "third, before any reply")
    deliver(m1)  # out of order: m0 is skipped and kept in bob's ring
    deliver(m0)
    deliver(m0, "Stale")  # replay
    deliver(m2)
    r0 = send("bob", "yes, here")
    r1 = send("bob", "second from bob")
    deliver(r1)
    deliver(r0)
    deliver_raw("bob", sent[r0]["wire"], "Reflected")  # bob's own message handed back
    a3 = send("alice", "new chain from alice")
    a4 = send("alice", "skipped for a while")
    a5 = send("alice", "newest")
    deliver(a5)
    deliver(a3)
    tampered = bytearray(sent[a4]["wire"])
    tampered[-1] ^= 0x80
    deliver_raw("bob", bytes(tampered), "Decrypt")
    deliver(a4)  # the failed attempt left the key in the ring
    b2 = send("bob", "bob again")
    b3 = send("bob", "bob, lost for good")
    b4 = send("bob", "bob after the loss")
    deliver(b2)
    deliver(b4)
    deliver(b4, "Stale")
    a6 = send("alice", "alice, third chain")
    deliver(a6)
    deliver(b3)  # late from bob's previous chain: still in alice's ring
    deliver(b3, "Stale")  # replayed from the previous chain
    flipped = bytearray(sent[a6]["wire"])
    flipped[1] ^= FLAG_RESPONDER
    deliver_raw("alice", bytes(flipped), "Decrypt")  # bit flipped to dodge the reflection check
    # A long gap: 40 skipped messages; the ring keeps the newest 32.
    burst = [send("bob", f"burst {i}") for i in range(41)]
    deliver(burst[40])
    deliver(burst[0], "Stale")
    deliver(burst[8])
    deliver(burst[39])
    far = [send("alice", f"far {i}") for i in range(MAX_SKIP + 2)]
    deliver(far[MAX_SKIP + 1], "TooFarAhead")
    deliver(far[MAX_SKIP])
    v.update({"events": events, "max_skip": MAX_SKIP, "ring": RING})
    return v


def gen_inner(rng):
    return {"text": [{"id": i, "text": t, "bytes": h(text_inner(i, t))}
                     for i, t in [(1, "hi"), (0xDEADBEEF, "José 🚀"), (2, "")]],
            "receipt": [{"ids": ids, "bytes": h(receipt_inner(ids))}
                        for ids in [[1], [1, 2, 3, 0xFFFFFFFF], list(range(100, 116))]],
            "session_lost": {"bytes": h(bytes([0x03]))},
            "invalid": [
                {"bytes": "", "why": "empty"},
                {"bytes": "09", "why": "unknown type"},
                {"bytes": "01000001", "why": "text id truncated"},
                {"bytes": "0100000001ff", "why": "text not UTF-8"},
                {"bytes": "0200", "why": "receipt with no id"},
                {"bytes": "020200000001", "why": "receipt count larger than its ids"},
                {"bytes": "0211" + "00000001" * 17, "why": "receipt with 17 ids"},
                {"bytes": "10" + "00" * 47, "why": "sas_start one byte short"},
                {"bytes": "0300", "why": "session_lost with a body"},
            ]}


def gen_sas(rng):
    alice, bob = Identity(rng, "alice"), Identity(rng, "bob")
    sid = rng.take("sas/sid", 16)
    esk_a, esk_b = rng.take("sas/esk_a"), rng.take("sas/esk_b")
    epk_a, epk_b = x_pub(esk_a), x_pub(esk_b)
    commit = sha256(label("sas-commit") + sid + epk_a)
    s = x_dh(esk_a, epk_b)
    assert s == x_dh(esk_b, epk_a)
    t = (label("sas") + sid + commit + epk_a + epk_b + alice.x + alice.ed + bob.x + bob.ed
         + lp(alice.name) + lp(bob.name))
    okm = hkdf(Z32, s, t, 38)
    code, mac_key = okm[:6], okm[6:]
    digits, emoji = sas_code(code)
    macs = [hmac256(mac_key, label("sas-confirm") + bytes([r])) for r in (0, 1)]
    return {
        "alice": {"name": alice.name, "x_public": h(alice.x), "ed_public": h(alice.ed)},
        "bob": {"name": bob.name, "x_public": h(bob.x), "ed_public": h(bob.ed)},
        "sid": h(sid), "esk_a": h(esk_a), "epk_a": h(epk_a), "esk_b": h(esk_b), "epk_b": h(epk_b),
        "commit": h(commit), "shared": h(s), "transcript": h(t), "code_bytes": h(code),
        "mac_key": h(mac_key), "decimal": digits, "emoji": emoji,
        "confirm_mac_a": h(macs[0]), "confirm_mac_b": h(macs[1]),
        "start": h(b"\x10" + sid + commit), "key": h(b"\x11" + sid + epk_b),
        "reveal": h(b"\x12" + sid + epk_a), "confirm_a": h(b"\x13" + sid + macs[0]),
        "cancel": h(b"\x14" + sid + b"\x02"),
        "code_cases": [{"bytes": h(b), "decimal": list(sas_code(b)[0]), "emoji": list(sas_code(b)[1])}
                       for b in [bytes(6), b"\xff" * 6, bytes(range(1, 7)), rng.take("sas/x", 6)]],
    }


# ---------------------------------------------------------------------------------------
# JSON messages (§2, §5.5, §10–§12). Python's json module is the reference's JSON reader
# and writer, so these lines are also what a reference peer makes of them.

def b64(b):
    return base64.b64encode(b).decode()


def compact(obj):
    """The bytes core emits: compact, raw UTF-8, keys in the order given."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def python_style(obj):
    """How the Python reference writes JSON: ", " and ": ", \\u escapes, here also
    another key order (sorted, nested objects too)."""
    return json.dumps(obj, sort_keys=True)


# What the Python reference reads of each v1 message (PROTOCOL.md §3).
V1_KEYS = {"hello": ["type", "user", "pub"], "welcome": ["type", "users"],
           "users": ["type", "users"], "error": ["type", "text"],
           "relay": ["type", "to", "from", "alg", "nonce", "cipher"]}


def user_v2(ident, caps):
    return {"caps": caps, "ed": b64(ident.ed), "bind": b64(ident.bind())}


def gen_json(rng):
    alice, bob = Identity(rng, "alice"), Identity(rng, "bob")
    jose = Identity(rng, "José_Ñandú-🚀")
    spk_id, spk_secret = 7, rng.take("json/spk")
    spk = x_pub(spk_secret)
    spk_sig = ed_sign(bob.ed_seed, spk_msg(spk_id, spk))
    opks = [(12, x_pub(rng.take("json/opk12"))), (13, x_pub(rng.take("json/opk13"))),
            (4294967295, x_pub(rng.take("json/opkmax")))]
    opks_text = " ".join(f"{i}:{b64(k)}" for i, k in opks)
    msgs = [
        ("prekeys", {"type": "prekeys", "id": "3", "spk_id": str(spk_id), "spk": b64(spk),
                     "spk_sig": b64(spk_sig), "opks": opks_text}),
        ("prekeys without one-time prekeys",
         {"type": "prekeys", "id": "0", "spk_id": "4294967295", "spk": b64(spk),
          "spk_sig": b64(spk_sig)}),
        ("bundle", {"type": "bundle", "user": "bob", "pub": b64(bob.x), "ed": b64(bob.ed),
                    "bind": b64(bob.bind()), "spk_id": str(spk_id), "spk": b64(spk),
                    "spk_sig": b64(spk_sig), "opk_id": "12", "opk": b64(opks[0][1])}),
        ("bundle without a one-time prekey",
         {"type": "bundle", "user": "bob", "pub": b64(bob.x), "ed": b64(bob.ed),
          "bind": b64(bob.bind()), "spk_id": str(spk_id), "spk": b64(spk),
          "spk_sig": b64(spk_sig)}),
        ("prekeys_low", {"type": "prekeys_low", "left": "3"}),
        ("dir join v1 user", {"type": "dir", "seq": "1", "op": "join", "user": "carol",
                              "pub": b64(x_pub(rng.take("json/carol")))}),
        ("dir join v2 user", {"type": "dir", "seq": "2", "op": "join", "user": jose.name,
                              "pub": b64(jose.x), "v2": user_v2(jose, "v2 sas")}),
        ("dir key change", {"type": "dir", "seq": "3", "op": "key", "user": "alice",
                            "pub": b64(alice.x), "v2": user_v2(alice, "v2 sas receipts")}),
        ("dir leave", {"type": "dir", "seq": "4294967295", "op": "leave", "user": "carol"}),
        ("error no_prekeys", {"type": "error", "code": "no_prekeys", "user": "bob",
                              "text": "bob has published no prekeys"}),
        ("error name_taken", {"type": "error", "code": "name_taken",
                              "text": "the name alice belongs to another key; it is released "
                                      "after 90 days unused"}),
        ("error with a newer code", {"type": "error", "code": "slow_down_2",
                                     # Every escape JSON has a short form for,
                                     # and one it has not: written as json.dumps does.
                                     "text": "\"quoted\" and\ttabbed, \\ \r\n\b\f \x01\x1f"}),
    ]
    messages = []
    for name, obj in msgs:
        line = compact(obj)
        assert json.loads(line) == obj and json.loads(python_style(obj)) == obj
        messages.append({"name": name, "compact": line, "python": python_style(obj), "obj": obj})
    # Every signature in them is real: the bundle verifies.
    ed_verify(bob.ed, bob.bind(), bob.bind_msg())
    ed_verify(bob.ed, spk_sig, spk_msg(spk_id, spk))
    identities = {i.name: {"x_public": h(i.x), "ed_public": h(i.ed)} for i in (alice, bob, jose)}

    # v1 lines with v2 additions: the reference reads exactly its v1 fields from them.
    carol = x_pub(rng.take("json/carol"))
    users = {"alice": b64(alice.x), "bob": b64(bob.x), "carol": b64(carol),
             jose.name: b64(jose.x)}
    v2_users = {"alice": user_v2(alice, "v2 sas receipts"), "bob": user_v2(bob, "v2"),
                jose.name: user_v2(jose, "v2 sas")}
    nonce, cipher = rng.take("json/nonce", 12), rng.take("json/cipher", 40)
    extended = [
        ("hello", {"type": "hello", "user": "alice", "pub": b64(alice.x),
                   "v2": user_v2(alice, "v2 sas receipts")}),
        ("welcome", {"type": "welcome", "users": users, "v2": {"seq": "0", "users": v2_users}}),
        ("users", {"type": "users", "users": users, "v2": {"seq": "17", "users": {}}}),
        ("error", {"type": "error", "code": "unknown_user", "user": "dave",
                   "text": "dave is not registered"}),
        ("relay", {"type": "relay", "to": "bob", "from": "alice", "alg": "X25519+AESGCM",
                   "nonce": b64(nonce), "cipher": b64(cipher), "id": "41"}),
    ]
    v1_visible = []
    for name, obj in extended:
        ref = {k: obj[k] for k in V1_KEYS[obj["type"]] if k in obj}
        # What the reference reads (dict lookups) is the same in both lines.
        seen = json.loads(compact(obj))
        assert all(seen.get(k) == ref.get(k) for k in V1_KEYS[obj["type"]])
        v1_visible.append({"name": name, "compact": compact(obj), "python": python_style(obj),
                           "v1": compact(ref), "obj": obj})

    # Hostile or malformed lines and the error core must answer (Debug of the error).
    def line(obj):
        return compact(obj)
    pk = {"type": "prekeys", "id": "3", "spk_id": "7", "spk": b64(spk), "spk_sig": b64(spk_sig)}
    many = " ".join(f"{i}:{b64(spk)}" for i in range(17))
    bundle = dict(msgs[2][1])
    del bundle["opk"]
    invalid = [
        ("parse", line({**pk, "opks": many}), 'TooMany("opks")'),
        ("parse", line({**pk, "opks": f"5:{b64(spk)} 5:{b64(spk)}"}), 'Duplicate("opks")'),
        ("parse", line({**pk, "opks": f"5:{b64(spk)}  6:{b64(spk)}"}), 'WrongType("opks")'),
        ("parse", line({**pk, "opks": f"05:{b64(spk)}"}), 'BadNumber("opks")'),
        ("parse", line({**pk, "opks": f"5:{b64(spk)[:-2]}"}), 'BadBase64("opks")'),
        ("parse", line({**pk, "opks": f"5:{b64(spk + b'x')}"}), 'BadLength { field: "opks", len: 33 }'),
        ("parse", line({**pk, "opks": 5}), 'WrongType("opks")'),
        ("parse", line({**pk, "spk_sig": b64(spk)}), 'BadLength { field: "spk_sig", len: 32 }'),
        ("parse", line({k: v for k, v in pk.items() if k != "spk"}), 'MissingField("spk")'),
        ("parse", line(bundle), 'MissingField("opk")'),
        ("parse", line({**msgs[3][1], "opk": b64(spk)}), 'MissingField("opk_id")'),
        ("parse", line({**msgs[3][1], "pub": b64(spk[:31])}), 'BadLength { field: "pub", len: 31 }'),
        ("parse", line({"type": "prekeys_low", "left": "-1"}), 'BadNumber("left")'),
        ("parse", line({"type": "dir", "seq": "01", "op": "leave", "user": "x"}), 'BadNumber("seq")'),
        ("parse", line({"type": "dir", "seq": "1", "op": "part", "user": "x"}), 'WrongType("op")'),
        ("parse", line({"type": "dir", "seq": "1", "op": "join", "user": "x"}), 'MissingField("pub")'),
        ("parse", line({"type": "dir", "seq": "1", "op": "join", "user": "x", "pub": b64(spk),
                        "v2": "yes"}), 'WrongType("v2")'),
        ("parse", line({"type": "dir", "seq": "1", "op": "join", "user": "x", "pub": b64(spk),
                        "v2": {"caps": "v2  sas", "ed": b64(spk), "bind": b64(spk_sig)}}),
         'WrongType("caps")'),
        ("parse", line({"type": "dir", "seq": "1", "op": "key", "pub": b64(spk)}), 'MissingField("user")'),
        ("parse", line({"type": "error", "code": "Bad Code", "text": "x"}), 'WrongType("code")'),
        ("parse", line({"type": "error", "code": "x" * 33, "text": "x"}), 'WrongType("code")'),
        ("parse", line({"type": "error", "code": 5, "text": "x"}), 'WrongType("code")'),
        ("parse", line({"type": "error", "code": "no_prekeys"}), 'MissingField("text")'),
        ("parse", line({"type": "error", "text": "a v1 error"}), "UnknownType"),
        ("directory", line({"type": "users", "users": {}, "v2": {"users": {}}}), 'MissingField("seq")'),
        ("directory", line({"type": "users", "users": {}, "v2": {"seq": "1", "users": []}}),
         'WrongType("users")'),
        ("directory", line({"type": "users", "users": {}, "v2": {"seq": "1", "users": {"a": "b"}}}),
         'WrongType("users")'),
        ("directory", '{"type":"users","users":{},"v2":{"seq":"1","users":{"a":'
         + compact(v2_users["bob"]) + ',"\\u0061":' + compact(v2_users["bob"]) + '}}}',
         'Duplicate("users")'),
        ("directory", line({"type": "list", "v2": {"seq": "1", "users": {}}}), "UnknownType"),
        ("relay_id", line({"type": "relay", "to": "b", "nonce": "", "cipher": "", "id": "x"}),
         'BadNumber("id")'),
        ("relay_id", line({"type": "relay", "to": "b", "nonce": "", "cipher": "", "id": 7}),
         'WrongType("id")'),
        ("hello", line({"type": "hello", "v2": {"caps": "v2", "ed": b64(spk)}}), 'MissingField("bind")'),
    ]
    return {"identities": identities, "messages": messages, "v1_visible": v1_visible,
            "invalid": [{"fn": f, "line": l, "error": e} for f, l, e in invalid]}


def main():
    check = "--check" in sys.argv
    files = {}
    for name, fn in [("identity", gen_identity), ("hello", gen_hello), ("prekeys", gen_prekeys),
                     ("kdf", gen_kdf), ("x3dh", gen_x3dh), ("ratchet", gen_ratchet),
                     ("inner", gen_inner), ("sas", gen_sas), ("json", gen_json)]:
        doc = {"about": f"Seguro protocol v2 vectors: {name}; see docs/protocol-v2.md. "
                        "Made by tools/v2vectors/gen.py (pyca/cryptography); do not edit.",
               **fn(Stream("seguro v2 vectors/" + name))}
        files[name] = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    bad = []
    for name, text in files.items():
        path = OUT / f"{name}.json"
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                bad.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if bad:
        sys.exit("vectors differ from gen.py's output: " + ", ".join(bad))
    print(("checked " if check else "wrote ") + f"{len(files)} files in {OUT}")


if __name__ == "__main__":
    main()
