#!/usr/bin/env python3
"""Seeds fuzz/corpus/v2_wire and fuzz/corpus/v2_ratchet from the v2 vectors (v2_wire
also gets every JSON line of json.json)."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parents[2]
vec = root / "core" / "tests" / "vectors" / "v2"
seeds = []
for e in json.loads((vec / "ratchet.json").read_text())["events"]:
    for k in ("wire", "inner"):
        if e.get(k):
            seeds.append(bytes.fromhex(e[k]))
inner = json.loads((vec / "inner.json").read_text())
for group in ("text", "receipt", "invalid"):
    seeds += [bytes.fromhex(c["bytes"]) for c in inner[group]]
sas = json.loads((vec / "sas.json").read_text())
seeds += [bytes.fromhex(sas[k]) for k in ("start", "key", "reveal", "confirm_a", "cancel")]
for target in ("v2_wire", "v2_ratchet"):
    d = root / "fuzz" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds[:200]):
        (d / f"vector-{i:03}").write_bytes(s)
doc = json.loads((vec / "json.json").read_text())
lines = [c[k] for g in ("messages", "v1_visible") for c in doc[g] for k in ("compact", "python")]
lines += [c["line"] for c in doc["invalid"]]
d = root / "fuzz" / "corpus" / "v2_wire"
for i, line in enumerate(lines):
    (d / f"json-{i:03}").write_bytes(line.encode())
print(f"seeded {min(len(seeds), 200)} inputs per target, {len(lines)} JSON lines for v2_wire")

# The server's prekey file (host-std/src/server/prekeys.rs): two users whose signed
# prekeys carry the vectors' valid signatures, one with one-time prekeys, one without.
import base64

b64 = lambda h: base64.b64encode(bytes.fromhex(h)).decode()
cases = json.loads((vec / "prekeys.json").read_text())["cases"]
rows = []
for name, c, opks in (("ana", cases[1], "12:" + b64("11" * 32) + ",13:" + b64("22" * 32)),
                      ("jos%C3%A9", cases[0], "-")):
    rows.append(" ".join(["user", name, b64("33" * 32), b64(c["ed_public"]), b64("44" * 64),
                          str(c["spk_id"]), b64(c["spk_public"]), b64(c["sig"]), opks]))
d = root / "fuzz" / "corpus" / "server_prekeys"
d.mkdir(parents=True, exist_ok=True)
(d / "seed-1").write_text("seguro-prekeys 1\n" + "\n".join(rows) + "\n")
print("seeded server_prekeys with two users")
