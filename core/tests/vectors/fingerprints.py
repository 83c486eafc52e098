#!/usr/bin/env python3
"""Independent implementation of Seguro's per-key fingerprints (PROTOCOL.md section 5 and
core/src/fingerprint.rs), written from their description with nothing but hashlib.

Writes fingerprints-v1.json beside this file (with --check: only verifies that the file
is exactly what this script writes). Deterministic: running it again gives the
same bytes. The keys are 32-byte strings (any 32 bytes: fingerprints hash the encoding,
they do not check the point), chosen to exercise every digit position and the edges.

    short(pub)       = hex(SHA-256(pub))[:16] as "xxxxxxxx-xxxxxxxx"
    safety_code(pub) = SHA-256(pub) as eight big-endian u32 words, each written as 10
                       zero-padded decimal digits, all 80 digits cut into 16 groups of 5
                       joined by single spaces
    pair_code(a, b)  = the first 6 groups of the safety code of the key with the smaller
                       SHA-256 digest, then the first 6 groups of the other's: 12 groups of
                       5 joined by single spaces (the same for (a, b) and (b, a))
"""
import base64
import hashlib
import json
import pathlib
import struct
import sys


def short(pub: bytes) -> str:
    h = hashlib.sha256(pub).hexdigest()[:16]
    return h[:8] + "-" + h[8:]


def safety_code(pub: bytes) -> str:
    words = struct.unpack(">8I", hashlib.sha256(pub).digest())
    digits = "".join("%010d" % w for w in words)
    return " ".join(digits[i : i + 5] for i in range(0, 80, 5))


def pair_code(a: bytes, b: bytes) -> str:
    first, second = sorted((a, b), key=lambda k: hashlib.sha256(k).digest())
    return " ".join(safety_code(first).split()[:6] + safety_code(second).split()[:6])


def keys():
    yield "zeros", bytes(32)
    yield "ones", b"\xff" * 32
    yield "counting", bytes(range(32))
    # alice_pub of vector v1-1-0 in ../shared/vectors/e2ee-v1.json
    yield "reference-alice", bytes.fromhex(
        "74f1c08a94005d9530beb2b536c38a5505723c6b7c78b3df8b4b65780a04046d"
    )
    for i in range(24):
        yield "derived-%02d" % i, hashlib.sha256(b"seguro fingerprint vector %d" % i).digest()


def main():
    out = []
    for name, pub in keys():
        digest = hashlib.sha256(pub).digest()
        out.append(
            {
                "name": name,
                "pub": base64.b64encode(pub).decode(),
                "sha256": digest.hex(),
                "short": short(pub),
                "safety_code": safety_code(pub),
            }
        )
    # Pair codes (what /verify shows) of neighbouring keys in both orders, and of a key
    # with itself.
    named = list(keys())
    pairs = []
    for (na, a), (nb, b) in zip(named, named[1:] + named[:1]):
        pairs.append({"a": na, "b": nb, "pair_code": pair_code(a, b)})
    pairs.append({"a": "zeros", "b": "zeros", "pair_code": pair_code(bytes(32), bytes(32))})
    path = pathlib.Path(__file__).with_name("fingerprints-v1.json")
    doc = {
        "about": "Seguro per-key fingerprints, made by fingerprints.py (hashlib only)",
        "vectors": out,
        "pairs": pairs,
    }
    text = json.dumps(doc, indent=1) + "\n"
    if "--check" in sys.argv[1:]:
        if path.read_text() != text:
            sys.exit(f"{path} differs from what {__file__} writes: regenerate it")
        print(f"{path.name}: reproduced byte for byte")
        return
    path.write_text(text)


if __name__ == "__main__":
    main()
