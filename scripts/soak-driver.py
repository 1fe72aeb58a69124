"""The load side of scripts/soak: a fixed request rate against one gateway, every rail mixed.

Serves a loopback OAuth issuer (RFC 8414 metadata and a JWKS with one ES256 key) for the
gateway's `[oauth]` rail, waits for the --go file, then runs one thread per kind of call, each on
its own keep-alive connection and its own schedule (rate × weight per second), for --duration
seconds. Writes a JSON report: requests, achieved rate, answers per kind, unexpected answers.

Only the Python standard library, httpx, cryptography and PyJWT (all in .venv); the puzzle solver
is the documented one from tests/e2e/turnpike_e2e.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from turnpike_e2e import authorization, py_solve  # noqa: E402

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
# kind: (share of the rate, tool, arguments)
KINDS = {
    "pow": (0.30, "echo", {"text": "soak"}),
    "l402-balance": (0.25, "slow", {"steps": 1, "delay_ms": 1}),
    "oauth": (0.20, "whoami", {}),
    "free": (0.15, "add", {"a": 2, "b": 3}),
    "no-credential": (0.05, "echo", {"text": "soak"}),
    "forged": (0.05, "echo", {"text": "soak"}),
}


def b64u(n: int, length: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


class Issuer:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x, 32), "y": b64u(nums.y, 32),
               "kid": "soak-1", "alg": "ES256", "use": "sig"}
        meta = {"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                "token_endpoint": f"{self.url}/token", "response_types_supported": ["code"]}
        docs = {"/.well-known/oauth-authorization-server": meta, "/jwks": {"keys": [jwk]}}
        self.fetches = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                doc = docs.get(self.path)
                outer.fetches[self.path] += 1
                body = json.dumps(doc if doc is not None else {"error": "not_found"}).encode()
                self.send_response(200 if doc is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, resource: str, n: int) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": f"soak-user-{n % 7}", "aud": resource, "iat": now,
                  "exp": now + 900, "client_id": f"soak-client-{n % 3}", "scope": "mcp:tools"}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "soak-1", "typ": "at+jwt"})


class Load:
    def __init__(self, args: argparse.Namespace, issuer: Issuer) -> None:
        self.url = args.gateway
        self.data_dir = Path(args.data_dir)
        self.issuer = issuer
        self.lock = threading.Lock()
        self.outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.requests = 0
        self.unexpected = 0
        self.samples: list[str] = []

    def post(self, c: httpx.Client, tool: str, args: dict, headers: dict | None = None) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        r = c.post(self.url, json=body, headers={**HEADERS, **(headers or {})})
        with self.lock:
            self.requests += 1
        return r

    def record(self, kind: str, what: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.outcomes[kind][what] += 1
            if not ok:
                self.unexpected += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{kind}: {what} {detail[:300]}")

    def buy(self, c: httpx.Client, r: httpx.Response) -> str:
        line = next(v for v in r.headers.get_list("www-authenticate") if v.startswith("L402 "))
        mac = line.split('macaroon="', 1)[1].split('"', 1)[0]
        inv = line.split('invoice="', 1)[1].split('"', 1)[0]
        w = json.loads((self.data_dir / "dev-wallet.json").read_text())
        p = c.post(f"{w['url']}/v1/channels/transactions", json={"payment_request": inv},
                   headers={"Grpc-Metadata-macaroon": w["macaroon_hex"]})
        preimage = base64.b64decode(p.json()["payment_preimage"]).hex()
        return f"L402 {mac}:{preimage}"

    def run_kind(self, kind: str, rate: float, deadline: float) -> None:
        _, tool, args = KINDS[kind]
        interval = 1.0 / rate
        state: dict = {"n": 0, "auth": None}
        with httpx.Client(timeout=60) as c:
            nxt = time.monotonic()
            while True:
                nxt += interval
                now = time.monotonic()
                if now >= deadline:
                    return
                if nxt > now:
                    time.sleep(nxt - now)
                try:
                    self.one(c, kind, tool, args, state)
                except (httpx.HTTPError, KeyError, ValueError, StopIteration) as e:
                    self.record(kind, type(e).__name__, False, str(e))

    def one(self, c: httpx.Client, kind: str, tool: str, args: dict, state: dict) -> None:
        state["n"] += 1
        if kind == "pow":
            r = self.post(c, tool, args)
            line = next(v for v in r.headers.get_list("www-authenticate") if v.startswith("PoW "))
            token = line.split('challenge="', 1)[1].split('"', 1)[0]
            r = self.post(c, tool, args, {"Authorization": authorization(token, py_solve(token))})
            self.record(kind, str(r.status_code), r.status_code == 200 and "result" in r.json(), r.text)
        elif kind == "l402-balance":
            if state["auth"] is None:
                r = self.post(c, tool, args)
                state["auth"] = self.buy(c, r)
                self.record(kind, "bought", r.status_code == 402, r.text)
            r = self.post(c, tool, args, {"Authorization": state["auth"]})
            if r.status_code == 402:  # the balance is used up: top up
                state["auth"] = self.buy(c, r)
                self.record(kind, "topped-up", True)
                r = self.post(c, tool, args, {"Authorization": state["auth"]})
            self.record(kind, str(r.status_code), r.status_code == 200 and "result" in r.json(), r.text)
        elif kind == "oauth":
            if state["auth"] is None or state["n"] % 50 == 0:
                state["auth"] = "Bearer " + self.issuer.token(self.url, state["n"])
            r = self.post(c, tool, args, {"Authorization": state["auth"]})
            self.record(kind, str(r.status_code), r.status_code == 200 and "result" in r.json(), r.text)
        elif kind == "free":
            r = self.post(c, tool, args)
            self.record(kind, str(r.status_code), r.status_code == 200 and "result" in r.json(), r.text)
        elif kind == "no-credential":
            r = self.post(c, tool, args)
            self.record(kind, str(r.status_code), r.status_code == 402, r.text)
        elif kind == "forged":
            r = self.post(c, tool, args, {"Authorization": 'PoW challenge="' + "A" * 148 + '", solution="1"'})
            self.record(kind, str(r.status_code), r.status_code == 401, r.text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--issuer-port", type=int, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--go", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated kinds to run (their shares are rescaled to the rate)")
    args = ap.parse_args()
    chosen = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in chosen if k not in KINDS]
    if unknown or not chosen:
        ap.error(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    total = sum(KINDS[k][0] for k in chosen)

    issuer = Issuer(args.issuer_port)
    while not os.path.exists(args.go):
        time.sleep(0.1)
    load = Load(args, issuer)
    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=load.run_kind, args=(k, args.rate * KINDS[k][0] / total, deadline),
                                daemon=True)
               for k in chosen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 120)
    elapsed = time.monotonic() - started
    report = {"duration": elapsed, "rate": args.rate, "requests": load.requests,
              "achieved_rps": load.requests / elapsed if elapsed else 0,
              "outcomes": {k: dict(v) for k, v in load.outcomes.items() if k in chosen},
              "unexpected": load.unexpected, "unexpected_samples": load.samples,
              "issuer_fetches": dict(issuer.fetches)}
    Path(args.report).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
