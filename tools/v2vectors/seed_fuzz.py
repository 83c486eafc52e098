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
