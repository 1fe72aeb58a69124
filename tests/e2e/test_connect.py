"""`turnpike connect` end to end: a real MCP client (the Python `mcp` SDK) launches the bridge over
stdio, and the bridge gets priced calls through real turnpike gateways, once per rail:

- proof-of-work: in front of server-everything (2025 sessions, SSE), challenges in band and as
  HTTP 402; and in front of the fixture server speaking 2026-07-28 (stateless, routing headers);
- L402: paid through the dev Lightning backend's dev wallet, which the bridge uses as the user's
  LND REST wallet; a balance token is bought once and reused;
- OAuth: client credentials (secret) against oidc-provider, with step-up on 403
  insufficient_scope.

Budgets: a call over budget is refused before anything is paid; a wallet error records no spend;
a remote that lies (an invoice above the price it advertised; an absurd proof-of-work effort) is
refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from turnpike_e2e import (
    FIXTURE,
    NODE22,
    ROOT,
    TURNPIKE,
    GatewayConfig,
    Proc,
    PortTaken,
    free_port,
    on_free_port,
    require_file,
    spend_log,
    start_everything_http,
    start_fixture_http,
    start_gateway,
    toml_str,
    wait_until,
)

DEV_KEY = "22" * 32


def bridge(url: str, state: Path, *flags: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"}
    full_env.update(env or {})
    return StdioServerParameters(
        command=str(TURNPIKE),
        args=["connect", url, "--state-dir", str(state), *flags],
        env=full_env,
    )


def call(params: StdioServerParameters, name: str, args: dict, times: int = 1) -> list:
    """Connects through the bridge, lists tools, calls `name` `times` times; the results."""
    out = []

    async def main() -> None:
        async with Client(params) as c:
            tools = await c.list_tools()
            assert any(t.name == name for t in tools.tools), [t.name for t in tools.tools]
            for _ in range(times):
                out.append(await c.call_tool(name, args))

    anyio.run(main)
    return out


def text(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def spent_report(state: Path) -> str:
    r = subprocess.run([str(TURNPIKE), "connect", "--spent", "--state-dir", str(state)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ---------------------------------------------------------------------------------------------
# Proof-of-work
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pow_everything(work: Path) -> Iterator[str]:
    require_file(TURNPIKE, "cargo build -p turnpike")
    up, url = start_everything_http(work, "connect-everything")
    cfg = GatewayConfig(upstream_url=url, default_pow=4000, subpuzzles=4,
                        tools={"echo": {"free": True}})
    gw = start_gateway(work, "gw-connect-pow", cfg)
    yield gw.url
    gw.proc.stop()
    up.stop()


@pytest.mark.parametrize("mode", ["in-band", "http"])
def test_pow_solved_through_everything(pow_everything: str, tmp_path: Path, mode: str) -> None:
    state = tmp_path / "state"
    results = call(bridge(pow_everything, state, "--challenge-mode", mode),
                   "get-sum", {"a": 2, "b": 40}, times=2)
    for r in results:
        assert not r.is_error, text(r)
        assert "42" in text(r)
    log = spend_log(state)
    assert [e["rail"] for e in log] == ["pow", "pow"], log
    assert all(e["status"] == "solved" and e["hashes"] > 0 for e in log)
    assert "solved" in spent_report(state)
    # State directory and files are owner-only.
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "spend.jsonl").stat().st_mode) == 0o600


def test_free_tool_and_no_spend(pow_everything: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    [r] = call(bridge(pow_everything, state), "echo", {"message": "hi"})
    assert not r.is_error and "hi" in text(r)
    assert spend_log(state) == []


@pytest.fixture(scope="module")
def pow_fixture(work: Path) -> Iterator[str]:
    require_file(FIXTURE, "cargo build -p turnpike-fixture")
    up, port = start_fixture_http(work, "connect-fixture", "--stateless", "--json")
    cfg = GatewayConfig(upstream_url=f"http://127.0.0.1:{port}/mcp", default_pow=4000, subpuzzles=4,
                        tools={"echo": {"free": True},
                               "slow": {"pow": 10_000_000_000_000}},
                        extra="[pow.load]\nceiling = 100000000000000\n")
    gw = start_gateway(work, "gw-connect-fixture", cfg)
    yield gw.url
    gw.proc.stop()
    up.stop()


def test_pow_modern_era(pow_fixture: str, tmp_path: Path) -> None:
    """The fixture server speaks 2026-07-28: the SDK negotiates it through the bridge
    (server/discover), and the bridge sends the routing headers the gateway checks."""
    state = tmp_path / "state"
    async def main() -> None:
        async with Client(bridge(pow_fixture, state)) as c:
            r = await c.call_tool("add", {"a": 20, "b": 22})
            assert not r.is_error, text(r)
            assert "42" in text(r)

    anyio.run(main)
    assert [e["status"] for e in spend_log(state)] == ["solved"]


def test_absurd_effort_refused(pow_fixture: str, tmp_path: Path) -> None:
    """A puzzle far beyond the CPU-time cap is refused at once with a message the agent can show,
    and nothing is attempted."""
    state = tmp_path / "state"
    [r] = call(bridge(pow_fixture, state, "--pow-max-secs", "5"), "slow", {"seconds": 0})
    assert r.is_error
    assert "CPU-time cap" in text(r), text(r)
    assert spend_log(state) == []


# ---------------------------------------------------------------------------------------------
# L402
# ---------------------------------------------------------------------------------------------


@dataclass
class L402Setup:
    url: str
    data_dir: Path

    def wallet(self) -> dict:
        return json.loads((self.data_dir / "dev-wallet.json").read_text())

    def payments(self) -> int:
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM l402_ledger WHERE kind = 'payment'").fetchone()[0]

    def invoices(self) -> int:
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM l402_ledger WHERE kind = 'invoice'").fetchone()[0]


@pytest.fixture(scope="module")
def l402(work: Path) -> Iterator[L402Setup]:
    require_file(FIXTURE, "cargo build -p turnpike-fixture")
    up, up_port = start_fixture_http(work, "connect-l402-fixture", "--stateless", "--json")
    data_dir = work / "gw-connect-l402-data"
    # This module fixture is set up again for test_connect_inspector.py in the same session, with
    # the same data directory: the previous gateway's dev-wallet.json (a wallet that is gone)
    # must not pass for this one's.
    (data_dir / "dev-wallet.json").unlink(missing_ok=True)
    config = work / "gw-connect-l402.toml"
    config.write_text("\n".join([
        "[server]", 'listen = "127.0.0.1:0"', 'path = "/mcp"',
        f"data_dir = {toml_str(str(data_dir))}", "",
        "[upstream]", f'url = "http://127.0.0.1:{up_port}/mcp"', "",
        "[tools.add]", "l402 = { sat = 2 }",
        "[tools.echo]", 'l402 = { sat = 1, mode = "balance", bundle = 3 }',
        "[tools.slow]", "l402 = { sat = 50 }",
        "[tools.whoami]", "free = true", "",
        "[l402]", 'store = "sqlite"', "",
        "[lightning]", 'backend = "dev"', f"key_hex = {toml_str(DEV_KEY)}",
        "[lightning.dev_wallet]", 'listen = "127.0.0.1:0"', "",
    ]))
    gw = Proc("gw-connect-l402", [str(TURNPIKE), "serve", "--config", str(config)],
              work / "gw-connect-l402.log")
    port = gw.reported_port("gateway")
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 10, "dev wallet")
    yield L402Setup(f"http://127.0.0.1:{port}/mcp", data_dir)
    gw.stop()
    up.stop()


def wallet_flags(s: L402Setup, url: str | None = None) -> tuple[list[str], dict[str, str]]:
    w = s.wallet()
    return (["--wallet", "lnd", "--wallet-url", url or w["url"], "--wallet-secret-env", "DEV_MACAROON"],
            {"DEV_MACAROON": w["macaroon_hex"]})


def test_l402_paid_with_dev_wallet(l402: L402Setup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    flags, env = wallet_flags(l402)
    before = l402.payments()
    results = call(bridge(l402.url, state, *flags, env=env), "add", {"a": 1, "b": 2}, times=2)
    for r in results:
        assert not r.is_error, text(r)
        assert "3" in text(r)
    # Per call: two payments of 2 sat, both logged and confirmed by the gateway.
    log = spend_log(state)
    assert [(e["rail"], e["status"], e["amount_msat"]) for e in log] == [("l402", "paid", 2000)] * 2
    assert l402.payments() == before + 2
    report = spent_report(state)
    assert "paid" in report and "4 sat in the last hour" in report, report
    assert stat.S_IMODE((state / "spend.jsonl").stat().st_mode) == 0o600


def test_l402_balance_bought_once(l402: L402Setup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    flags, env = wallet_flags(l402)
    results = call(bridge(l402.url, state, *flags, env=env), "echo", {"text": "hi"}, times=3)
    for r in results:
        assert not r.is_error, text(r)
    # A 3-sat balance pays for three 1-sat calls: one payment.
    log = spend_log(state)
    assert [(e["status"], e["amount_msat"]) for e in log] == [("paid", 3000)], log
    creds = state / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    kept = json.loads(creds.read_text())["l402"]
    assert kept and kept[0]["mode"] == "balance"
    # The fourth call finds the balance used up and buys another.
    results = call(bridge(l402.url, state, *flags, env=env), "echo", {"text": "again"})
    assert not results[0].is_error, text(results[0])
    assert [e["amount_msat"] for e in spend_log(state)] == [3000, 3000]


def test_over_budget_refused_before_paying(l402: L402Setup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    flags, env = wallet_flags(l402)
    before = l402.payments()
    # `slow` costs 50 sat: over the rail policy's maximum …
    [r] = call(bridge(l402.url, state, *flags, env=env), "slow", {"seconds": 0})
    assert r.is_error and "over budget" in text(r) and "nothing paid" in text(r), text(r)
    # … and `add` (2 sat) over a 1-sat per-call budget, and over an exhausted daily one.
    [r] = call(bridge(l402.url, state, *flags, "--max-per-call", "1", env=env), "add", {"a": 1, "b": 1})
    assert r.is_error and "per-call budget" in text(r), text(r)
    assert spend_log(state) == []
    assert l402.payments() == before
    # A daily budget of 4 sat (no fee allowance) lets two 2-sat calls through, not a third.
    results = call(bridge(l402.url, state, *flags, "--max-per-day", "4", "--max-fee", "0", env=env),
                   "add", {"a": 1, "b": 1}, times=3)
    assert [r.is_error for r in results] == [False, False, True]
    assert "daily budget" in text(results[2]), text(results[2])
    assert [e["status"] for e in spend_log(state)] == ["paid", "paid"]
    assert l402.payments() == before + 2


def test_wallet_error_leaves_nothing_spent(l402: L402Setup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    w = l402.wallet()
    flags = ["--wallet", "lnd", "--wallet-url", w["url"], "--wallet-secret-env", "DEV_MACAROON"]
    before = l402.payments()
    # A macaroon the wallet refuses.
    [r] = call(bridge(l402.url, state, *flags, env={"DEV_MACAROON": "00" * 32}), "add", {"a": 1, "b": 1})
    assert r.is_error and "wallet" in text(r), text(r)
    # A wallet that is not there.
    dead = f"http://127.0.0.1:{free_port()}"
    [r] = call(bridge(l402.url, state, "--wallet", "lnd", "--wallet-url", dead,
                      "--wallet-secret-env", "DEV_MACAROON", env={"DEV_MACAROON": w["macaroon_hex"]}),
               "add", {"a": 1, "b": 1})
    assert r.is_error and "wallet" in text(r), text(r)
    log = spend_log(state)
    assert [e["status"] for e in log] == ["failed", "failed"], log
    assert "0 sat in the last hour" in spent_report(state)
    assert l402.payments() == before
    # No credential was kept.
    creds = state / "credentials.json"
    assert not creds.exists() or json.loads(creds.read_text())["l402"] == []


# A remote that lies: it relays a real gateway but advertises a lower price than its invoice asks.
LIAR = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import httpx

UPSTREAM = sys.argv[2]

def lie(v):
    if isinstance(v, dict):
        if v.get("rail") == "l402" and "amount_msat" in v:
            v["amount_msat"] = 1
        for x in v.values():
            lie(x)
    elif isinstance(v, list):
        for x in v:
            lie(x)

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = httpx.post(UPSTREAM, content=body, headers=fwd, timeout=30)
        data = r.content
        if r.headers.get("content-type", "").startswith("application/json") and data:
            v = json.loads(data); lie(v); data = json.dumps(v).encode()
        self.send_response(r.status_code)
        for k, val in r.headers.multi_items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, val)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.send_response(405); self.send_header("content-length", "0"); self.end_headers()
    do_DELETE = do_GET

server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"liar listening on port {server.server_address[1]}", flush=True)
server.serve_forever()
'''


def test_lying_remote_refused(l402: L402Setup, tmp_path: Path, work: Path) -> None:
    import sys
    script = tmp_path / "liar.py"
    script.write_text(LIAR)
    liar = Proc("liar", [sys.executable, str(script), "0", l402.url], work / "liar.log")
    try:
        port = liar.reported_port("liar")
        state = tmp_path / "state"
        flags, env = wallet_flags(l402)
        before = l402.payments()
        [r] = call(bridge(f"http://127.0.0.1:{port}/mcp", state, *flags, "--challenge-mode", "http",
                          env=env), "add", {"a": 1, "b": 1})
        assert r.is_error and "dishonest" in text(r) and "advertised 1 msat" in text(r), text(r)
        assert spend_log(state) == []
        assert l402.payments() == before
    finally:
        liar.stop()


# ---------------------------------------------------------------------------------------------
# OAuth
# ---------------------------------------------------------------------------------------------


@dataclass
class OAuthGw:
    url: str
    key_path: Path


@pytest.fixture(scope="module")
def oauth_gw(work: Path) -> Iterator[OAuthGw]:
    from test_oauth import CLIENT_SECRET, _start_provider  # the same oidc-provider setup

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "client-1", "use": "sig"})
    d = work / "connect-oauth"
    d.mkdir(exist_ok=True)
    key_path = d / "agent-jwt.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    fixture, up_port = start_fixture_http(d, "connect-oauth-fixture", "--stateless", "--json")

    # The resource URL (the gateway's address) goes into the provider's configuration before the
    # gateway starts: both start again on another port should the gateway find it taken.
    def start(port: int) -> tuple[Proc, subprocess.Popen, str]:
        resource = f"http://127.0.0.1:{port}/mcp"
        provider, issuer = _start_provider(d, resource, jwk)
        config = d / "gw.toml"
        config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
path = "/mcp"
data_dir = {toml_str(str(d / "data"))}

[upstream]
url = "http://127.0.0.1:{up_port}/mcp"

[tools.add]
oauth = {{ scopes = ["mcp:tools"] }}
[tools.whoami]
oauth = {{ scopes = ["mcp:admin"] }}
[tools.echo]
free = true

[oauth]
issuer = {toml_str(issuer)}
scopes_supported = ["mcp:tools"]
""")
        gw = Proc("gw-connect-oauth", [str(TURNPIKE), "serve", "--config", str(config)], d / "gw.log")
        try:
            assert gw.reported_port("gateway") == port
        except PortTaken:
            gw.stop()
            provider.kill()
            provider.wait(timeout=5)
            raise
        return gw, provider, resource

    gw, provider, resource = on_free_port(start)
    os.environ["TP_CONNECT_SECRET"] = CLIENT_SECRET
    try:
        yield OAuthGw(resource, key_path)
    finally:
        gw.stop()
        fixture.stop()
        provider.kill()
        provider.wait(timeout=5)


def test_oauth_client_credentials_and_step_up(oauth_gw: OAuthGw, tmp_path: Path) -> None:
    state = tmp_path / "state"
    params = bridge(oauth_gw.url, state, "--oauth-client-id", "agent-secret",
                    "--oauth-client-secret-env", "TP_CONNECT_SECRET",
                    env={"TP_CONNECT_SECRET": os.environ["TP_CONNECT_SECRET"]})
    out = {}

    async def main() -> None:
        async with Client(params) as c:
            r = await c.call_tool("add", {"a": 40, "b": 2})
            assert not r.is_error, text(r)
            assert "42" in text(r)
            # whoami needs mcp:admin: the first token (mcp:tools) gets 403 insufficient_scope,
            # and the bridge asks for both scopes.
            r = await c.call_tool("whoami", {})
            assert not r.is_error, text(r)
            out["whoami"] = text(r)

    anyio.run(main)
    creds = state / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    tok = json.loads(creds.read_text())["oauth"]
    assert len(tok) == 1 and tok[0]["resource"] == oauth_gw.url
    assert set(tok[0]["scope"].split()) >= {"mcp:tools", "mcp:admin"}, tok[0]["scope"]
    # The token is reused by a new bridge process: no new token request is needed.
    [r] = call(params, "add", {"a": 1, "b": 1})
    assert not r.is_error
    assert json.loads(creds.read_text())["oauth"][0]["access_token"] == tok[0]["access_token"]
    assert spend_log(state) == []
    # A token the server no longer accepts (401 invalid_token) is replaced by a fresh one.
    data = json.loads(creds.read_text())
    data["oauth"][0]["access_token"] = "not-a-valid-token"
    creds.write_text(json.dumps(data))
    [r] = call(params, "add", {"a": 2, "b": 2})
    assert not r.is_error, text(r)
    fresh = json.loads(creds.read_text())["oauth"][0]["access_token"]
    assert fresh not in ("not-a-valid-token", tok[0]["access_token"])


def test_oauth_private_key_jwt(oauth_gw: OAuthGw, tmp_path: Path) -> None:
    state = tmp_path / "state"
    params = bridge(oauth_gw.url, state, "--oauth-client-id", "agent-jwt",
                    "--oauth-private-key", str(oauth_gw.key_path), "--oauth-key-id", "client-1")
    [r] = call(params, "add", {"a": 40, "b": 2})
    assert not r.is_error, text(r)
    assert "42" in text(r)


def test_oauth_not_configured_says_so(oauth_gw: OAuthGw, tmp_path: Path) -> None:
    [r] = call(bridge(oauth_gw.url, tmp_path / "state"), "add", {"a": 1, "b": 1})
    assert r.is_error and "no OAuth client is configured" in text(r), text(r)


def test_print_config(tmp_path: Path) -> None:
    r = subprocess.run([str(TURNPIKE), "connect", "https://mcp.example.com/mcp", "--print-config",
                        "--max-pay", "5", "--wallet-secret-env", "NWC_URI", "--wallet", "nwc"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    block = json.loads(r.stdout)
    server = block["mcpServers"]["mcp.example.com"]
    assert Path(server["command"]).name == "turnpike"
    assert server["args"][:2] == ["connect", "https://mcp.example.com/mcp"]
    assert "--max-pay" in server["args"] and "--print-config" not in server["args"]
    assert "NWC_URI" in server["env"]


# ---------------------------------------------------------------------------------------------
# A second real client: the TypeScript SDK over stdio
# ---------------------------------------------------------------------------------------------

TS_STDIO = r'''
import path from "node:path";
import { pathToFileURL } from "node:url";
const sdk = (p) => import(pathToFileURL(path.join(process.env.TURNPIKE_DEPS,
  "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StdioClientTransport } = await sdk("client/stdio.js");
const [bin, url, state, tool, args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: bin,
  args: ["connect", url, "--state-dir", state], env: { PATH: process.env.PATH, RUST_LOG: "warn" } });
const client = new Client({ name: "turnpike-connect-ts", version: "0" });
await client.connect(transport);
const out = { tools: (await client.listTools()).tools.map((t) => t.name) };
out.result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
'''


def test_typescript_sdk_over_stdio(pow_everything: str, tmp_path: Path) -> None:
    require_file(NODE22, "run scripts/setup-test-deps")
    script = tmp_path / "ts_stdio.mjs"
    script.write_text(TS_STDIO)
    state = tmp_path / "state"
    r = subprocess.run([str(NODE22), str(script), str(TURNPIKE), pow_everything, str(state),
                        "get-sum", json.dumps({"a": 19, "b": 23})],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "TURNPIKE_DEPS": str(ROOT / ".deps")})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "get-sum" in out["tools"]
    assert not out["result"].get("isError"), out["result"]
    assert "42" in json.dumps(out["result"]["content"])
    assert [e["status"] for e in spend_log(state)] == ["solved"]


# ---------------------------------------------------------------------------------------------
# The plain HTTP forwarder (`--listen`), for HTTP clients that know nothing of L402 or PoW
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def forwarder(request: pytest.FixtureRequest, tmp_path: Path, work: Path):
    procs: list[Proc] = []

    def start(url: str, *flags: str, env: dict[str, str] | None = None) -> str:
        # A port picked here; another one should `connect` find it taken.
        def on(port: int) -> str:
            p = Proc(f"forwarder-{len(procs)}", [str(TURNPIKE), "connect", url, "--state-dir",
                                                   str(tmp_path / "state"), "--listen",
                                                   f"127.0.0.1:{port}", *flags],
                     work / f"forwarder-{request.node.name}-{len(procs)}.log", env=env)
            try:
                p.wait_port(port)
            except PortTaken:
                p.stop()
                raise
            procs.append(p)
            return f"http://127.0.0.1:{port}/mcp"

        return on_free_port(on)

    yield start
    for p in procs:
        p.stop()


def test_forwarder_solves_and_pays_for_plain_http(pow_fixture: str, l402: L402Setup,
                                                  forwarder, tmp_path: Path) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 40, "b": 2}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    # Straight at the gateway: 402.
    assert httpx.post(pow_fixture, json=body, headers=headers, timeout=30).status_code == 402
    # Through the forwarder: solved.
    r = httpx.post(forwarder(pow_fixture), json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["content"][0]["text"] == "42"
    # Paid, through the dev wallet.
    flags, env = wallet_flags(l402)
    before = l402.payments()
    r = httpx.post(forwarder(l402.url, *flags, env=env), json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["content"][0]["text"] == "42"
    assert l402.payments() == before + 1
    assert [e["status"] for e in spend_log(tmp_path / "state")] == ["solved", "paid"]
