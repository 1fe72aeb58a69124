#!/usr/bin/env python3
"""A tiny MCP server that records everything it receives, for checking what the gateway forwards.

    recorder.py http PORT RECORD_FILE    Streamable HTTP (JSON responses, no sessions) on 127.0.0.1
                                         (PORT 0: a port of its own, printed as
                                         "recorder listening on port N")
    recorder.py stdio RECORD_FILE        newline-delimited JSON-RPC on stdin/stdout

Every message received is appended to RECORD_FILE as one JSON line: {"headers": {...} | null,
"body": <the JSON-RPC message>}. Header names are lower-cased. Standard library only.

Tools: `record` and `record-free` (both answer "recorded"); the gateway prices them as it is told.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()

TOOLS = [
    {"name": "record", "description": "Records the call.", "inputSchema": {"type": "object"}},
    {"name": "record-free", "description": "Records the call.", "inputSchema": {"type": "object"}},
]


def record(path: str, headers: dict | None, body: object) -> None:
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"headers": headers, "body": body}) + "\n")
        f.flush()


def answer(msg: object) -> dict | None:
    """The JSON-RPC response to one message, or None for notifications and responses."""
    if not isinstance(msg, dict) or "method" not in msg or "id" not in msg:
        return None
    rid = msg["id"]
    method = msg["method"]
    params = msg.get("params") or {}
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "turnpike-e2e-recorder", "version": "0"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": "recorded"}], "isError": False}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def serve_http(port: int, path: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("recorder: " + (fmt % args) + "\n")

        def _send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(status)
            if body:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            headers: dict[str, list[str]] = {}
            for k, v in self.headers.items():
                headers.setdefault(k.lower(), []).append(v)
            try:
                body = json.loads(raw)
            except ValueError:
                record(path, headers, {"unparsed": raw.decode(errors="replace")})
                self._send(400, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}')
                return
            record(path, headers, body)
            reply = answer(body)
            if reply is None:
                self._send(202)
            else:
                self._send(200, json.dumps(reply).encode())

        def do_GET(self) -> None:  # noqa: N802
            self._send(405)

        def do_DELETE(self) -> None:  # noqa: N802
            self._send(200)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"recorder listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()


def serve_stdio(path: str) -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            body = json.loads(line)
        except ValueError:
            record(path, None, {"unparsed": line})
            continue
        record(path, None, body)
        reply = answer(body)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "http":
        serve_http(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "stdio":
        serve_stdio(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
