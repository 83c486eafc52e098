#!/usr/bin/env python3
"""Makes a Seguro invite (docs/invite.md) from a server certificate and addresses.

usage: make_invite.py <server.crt> <host:port> [<host:port>...]

An implementation of the format independent of `seguro_core::invite`, written from the
specification: CI builds the board firmwares from its invites (so the Rust parser is
checked against it), and it makes a board's SEGURO_INVITE where the `seguro` binary is
not at hand. Needs the openssl command to read the certificate.
"""

import base64
import hashlib
import subprocess
import sys

MODULUS = 1_048_573  # the largest prime below 2**20
B32 = "abcdefghijklmnopqrstuvwxyz234567"

OIDS = {  # DER of the AlgorithmIdentifier's OIDs (with tag and length) -> label
    bytes.fromhex("06082a8648ce3d030107"): "p256",
    bytes.fromhex("06052b81040022"): "p384",
    bytes.fromhex("06052b81040023"): "p521",
    bytes.fromhex("06092a864886f70d010101"): "rsa",
    bytes.fromhex("06092a864886f70d01010a"): "rsa",
    bytes.fromhex("06032b6570"): "ed25519",
    bytes.fromhex("06032b6571"): "ed448",
}


def spki_der(cert_path):
    pem = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                          check=True, capture_output=True).stdout


def key_pin(spki):
    # The AlgorithmIdentifier is at the start of the SPKI; look only there.
    head = spki[:32]
    label = next((l for oid, l in OIDS.items() if oid in head), "other")
    digest = base64.b32encode(hashlib.sha256(spki).digest()).decode().rstrip("=").lower()
    return f"{label}:{digest}"


def check(body):
    s = sum((i % (MODULUS - 1) + 1) * b for i, b in enumerate(body.encode())) % MODULUS
    return "".join(B32[(s >> (5 * i)) & 31] for i in (3, 2, 1, 0))


def invite(cert_path, addresses):
    body = f"seguro://{','.join(addresses)}/v=1/k={key_pin(spki_der(cert_path))}/c="
    return body + check(body)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2])
    print(invite(sys.argv[1], sys.argv[2:]))
