#!/usr/bin/env python3
"""Seeds the fuzz corpora with every line of the shared protocol vectors."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent
shared = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent.parent / "shared"
lines = []
msgs = json.loads((shared / "vectors" / "messages-v1.json").read_text())
for m in msgs["messages"]:
    lines += [m["python_default"], m["compact_utf8"]]
e2ee = json.loads((shared / "vectors" / "e2ee-v1.json").read_text())
for v in e2ee["vectors"]:
    lines += [v["relay_line_python"], v["relay_line_compact"]]
for target in ["frame", "msg_parse", "client_lines"]:
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(lines):
        data = line.encode()
        if target == "frame":
            data = bytes([7]) + data + b"\n" + data + b"\r\n"
        (d / f"vector-{i:03}").write_bytes(data)
    if target == "client_lines":
        (d / "all-vectors").write_bytes("\n".join(lines).encode())
print(f"seeded {len(lines)} lines into {root / 'corpus'}")
