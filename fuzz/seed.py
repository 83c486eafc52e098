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
# The server's reader, hello check and router, the board's certificate parser and the
# client's decrypt path.
def seed(target, name, data):
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

for i, line in enumerate(lines):
    seed("server_hello", f"vector-{i:03}", line.encode())
    seed("server_reader", f"vector-{i:03}", bytes([5]) + line.encode() + b"\n")
seed("server_reader", "all-vectors", bytes([17]) + "\r\n".join(lines).encode() + b"\n")
seed("server_hello", "alice-lookalike", '{"type":"hello","user":"\u0430lice","pub":"CQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}'.encode())
# Router operations: hello a, hello b (slot 1), relay to b, list, push, leave.
seed("server_router", "join-relay-leave", b"\x00\x00\x00\n\x00\x01\x03\n\x01\x00\x03\n\x02\x01\n\x04\n\x03\x00\n\x01\x01\x00\n")
for der in sorted((root.parent / "host-embassy" / "tests" / "data").glob("*.der")):
    seed("embassy_cert", der.name, der.read_bytes())
seed("client_decrypt", "texts", "hello\0\0caf\u00e9 \u202e bidi\0\x1b[31mred".encode() + b"\0\xff\xfe")
print(f"seeded {len(lines)} lines into {root / 'corpus'}")
