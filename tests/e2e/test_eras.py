"""Both MCP eras through the gateway, with real clients on each side of the divide.

- The Python SDK (mcp 2.x: speaks 2026-07-28, opens with server/discover) through the gateway to
  servers that speak only the 2025 revisions: the fixture in legacy-only mode over HTTP, and
  server-everything over HTTP and as a stdio child.
- The TypeScript SDK client (1.32, 2025 revisions only) and the Python SDK in legacy mode through
  the gateway to the fixture in modern-only mode (it refuses initialize and sessions).
- Sealed session ids: a session begun on one gateway process goes on at another with the same
  data directory.
- A merged endpoint over two mounts (server-everything over HTTP, the fixture over stdio), listed
  and called by both SDKs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from mcp import Client

from conftest import DEFAULT_EFFORT, SUBPUZZLES
from test_ts_sdk import check_flow, run_ts
from turnpike_e2e import (
    ACCEPT,
    FIXTURE,
    NODE22,
    TURNPIKE,
    Gateway,
    GatewayConfig,
    Proc,
    require_file,
    response_messages,
    start_gateway,
    toml_str,
)

MODERN = "2026-07-28"


def start_fixture(work: Path, name: str, era: str, conformance: bool = False) -> tuple[Proc, str]:
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    args = [str(FIXTURE), "--listen", "127.0.0.1:0", "--era", era]
    if conformance:
        args.append("--conformance")
    p = Proc(name, args, work / f"{name}.log")
    port = p.reported_port("fixture")
    return p, f"http://127.0.0.1:{port}/mcp"


def fixture_gateway(work: Path, name: str, url: str) -> Gateway:
    """A gateway (`[upstream] era` left at auto: it probes) with echo and whoami free."""
    cfg = GatewayConfig(upstream_url=url, default_pow=DEFAULT_EFFORT, subpuzzles=SUBPUZZLES,
                        tools={"echo": {"free": True}, "whoami": {"free": True}})
    return start_gateway(work, name, cfg)


@pytest.fixture(scope="module")
def legacy_only(work: Path) -> Iterator[Gateway]:
    """The gateway (era auto) in front of the fixture speaking only the 2025 revisions."""
    up, url = start_fixture(work, "fixture-era-2025", "2025")
    gw = fixture_gateway(work, "gw-era-2025", url)
    yield gw
    gw.proc.stop()
    up.stop()


@pytest.fixture(scope="module")
def modern_only(work: Path) -> Iterator[Gateway]:
    """The gateway (era auto) in front of the fixture speaking only 2026-07-28."""
    up, url = start_fixture(work, "fixture-era-2026", "2026-07-28")
    gw = fixture_gateway(work, "gw-era-2026", url)
    yield gw
    gw.proc.stop()
    up.stop()


def whoami_headers(result) -> dict[str, list[str]]:
    return json.loads(result.content[0].text)["headers"]


# --- modern client, legacy server ----------------------------------------------------------------


def test_python_sdk_modern_to_legacy_only_fixture(legacy_only: Gateway) -> None:
    async def main():
        async with Client(legacy_only.url) as c:
            tools = sorted(t.name for t in (await c.list_tools()).tools)
            echo = await c.call_tool("echo", {"text": "across the eras"})
            who = await c.call_tool("whoami", {})
            return c.protocol_version, c.server_info, tools, echo, who

    version, info, tools, echo, who = anyio.run(main)
    assert version == MODERN, "the SDK spoke 2026-07-28 to the gateway"
    assert info is not None and info.name == "turnpike-fixture"
    assert tools == ["add", "echo", "slow", "whoami"]
    assert echo.is_error is False and echo.content[0].text == "across the eras"
    seen = whoami_headers(who)
    # The upstream saw a 2025 session, not the modern routing headers.
    assert seen["mcp-protocol-version"] == ["2025-11-25"], seen
    assert "mcp-session-id" in seen, seen
    assert "mcp-method" not in seen and "mcp-name" not in seen, seen


def test_python_sdk_modern_to_server_everything(gw: Gateway) -> None:
    """server-everything speaks only the 2025 revisions, over HTTP and as a stdio child."""

    async def main():
        async with Client(gw.url) as c:
            echo = await c.call_tool("echo", {"message": "modern"})
            return c.protocol_version, c.server_info, echo

    version, info, echo = anyio.run(main)
    assert version == MODERN
    assert info is not None and info.name == "mcp-servers/everything"
    assert echo.content[0].text == "Echo: modern"


def test_modern_raw_discover_and_untranslatable(legacy_only: Gateway) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN}
    r = httpx.post(legacy_only.url, headers={**h, "Mcp-Method": "server/discover"}, timeout=30,
                   json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}})
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert res["supportedVersions"] == [MODERN]
    assert res["resultType"] == "complete"
    assert res["cacheScope"] == "private" and res["ttlMs"] == 0
    assert "tools" in res["capabilities"]
    # subscriptions/listen is bridged to the upstream session's notifications; the fixture
    # announces no list changes, so nothing is honoured and the stream ends after the ack.
    r = httpx.post(legacy_only.url, headers={**h, "Mcp-Method": "subscriptions/listen"}, timeout=30,
                   json={"jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen",
                         "params": {"_meta": meta, "notifications": {"toolsListChanged": True}}})
    assert r.status_code == 200, r.text
    ack = response_messages(r)[0]
    assert ack["method"] == "notifications/subscriptions/acknowledged", ack
    assert ack["params"]["notifications"] == {}, ack
    assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 2, ack
    # Routing headers are still checked against the body first.
    r = httpx.post(legacy_only.url, headers={**h, "Mcp-Method": "tools/list"}, timeout=30,
                   json={"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                         "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": meta}})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020, r.text


# --- legacy client, modern server ----------------------------------------------------------------


def test_ts_sdk_legacy_to_modern_only_fixture(modern_only: Gateway) -> None:
    require_file(NODE22, "run scripts/setup-test-deps")
    out = run_ts(modern_only.url, ("echo", {"text": "ts"}), ("add", {"a": 40, "b": 2}))
    assert out["serverVersion"]["name"] == "turnpike-fixture"
    assert out["protocolVersion"] in ("2025-11-25", "2025-06-18", "2025-03-26")
    check_flow(out, "ts", "42")


def test_python_sdk_legacy_mode_to_modern_only_fixture(modern_only: Gateway) -> None:
    async def main():
        async with Client(modern_only.url, mode="legacy") as c:
            who = await c.call_tool("whoami", {})
            return c.protocol_version, who

    version, who = anyio.run(main)
    assert version == "2025-11-25"
    seen = whoami_headers(who)
    assert seen["mcp-protocol-version"] == [MODERN], seen
    assert seen["mcp-method"] == ["tools/call"] and seen["mcp-name"] == ["whoami"], seen
    assert "mcp-session-id" not in seen, "the modern upstream never sees a session id"


def legacy_post(url: str, sid: str | None, body: dict) -> httpx.Response:
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    if sid:
        h["Mcp-Session-Id"] = sid
    return httpx.post(url, json=body, headers=h, timeout=30)


def test_sealed_session_moves_between_instances(modern_only: Gateway, work: Path) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                       "clientInfo": {"name": "raw", "version": "1"}}}
    r = legacy_post(modern_only.url, None, init)
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    assert r.json()["result"]["serverInfo"]["name"] == "turnpike-fixture"
    # A second gateway process with the same data directory (same session key) routes it.
    cfg_text = modern_only.config_path.read_text()
    old_listen = next(line for line in cfg_text.splitlines() if line.startswith("listen"))
    path = work / "gw-era-2026-twin.toml"
    path.write_text(cfg_text.replace(old_listen, 'listen = "127.0.0.1:0"'))
    twin = Proc("gw-era-2026-twin", [str(TURNPIKE), "serve", "--config", str(path)], work / "gw-era-2026-twin.log")
    try:
        port = twin.reported_port("gateway")
        url = f"http://127.0.0.1:{port}/mcp"
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hop"}}}
        r = legacy_post(url, sid, call)
        assert r.status_code == 200, r.text
        msg = next(m for m in response_messages(r) if m.get("id") == 2)
        assert msg["result"]["content"][0]["text"] == "hop"
        # A forged or foreign id is a lost session (404), and no id at all is a bad request.
        assert legacy_post(url, sid[:-2] + "AA", call).status_code == 404
        assert legacy_post(url, "v1.e30.AAAA", call).status_code == 404
        assert legacy_post(url, None, call).status_code == 400
        # Subscriptions and the server stream are bridged to subscriptions/listen
        # (test_eras_bridges.py); this fixture offers neither resource subscriptions nor
        # list-changed notifications, so the client is told so at once.
        r = legacy_post(url, sid, {"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe",
                                   "params": {"uri": "file:///x"}})
        assert r.status_code == 200
        err = r.json()["error"]
        assert err["code"] == -32601 and "does not support resource subscriptions" in err["message"], err
        r = httpx.get(url, headers={"Accept": "text/event-stream", "Mcp-Session-Id": sid}, timeout=30)
        assert r.status_code == 405
    finally:
        twin.stop()


# --- merged endpoint -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merged(work: Path, everything: str) -> Iterator[str]:
    """A gateway with two mounts, server-everything over HTTP ("web") and the fixture over stdio
    ("local"), and a merged endpoint over both; echo is in both and so gets prefixed."""
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    text = f"""[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = {toml_str(str(work / "gw-merged-data"))}

[admin]
listen = "127.0.0.1:0"
token = "merged-admin-token-0123456789abcdef"

[pow]
subpuzzles = {SUBPUZZLES}

[tools.default]
pow = {DEFAULT_EFFORT}
[tools.local_echo]
free = true
[tools.web_echo]
free = true

[[mount]]
path = "/web/mcp"
name = "web"
upstream = {{ url = {toml_str(everything)} }}

[[mount]]
path = "/local/mcp"
name = "local"
upstream = {{ command = [{toml_str(str(FIXTURE))}, "--stdio"] }}

[merge]
path = "/all/mcp"
"""
    path = work / "gw-merged.toml"
    path.write_text(text)
    p = Proc("gw-merged", [str(TURNPIKE), "serve", "--config", str(path)], work / "gw-merged.log")
    port = p.reported_port("gateway")
    admin_port = p.reported_port("admin")
    global MERGED_ADMIN
    MERGED_ADMIN = f"http://127.0.0.1:{admin_port}"
    yield f"http://127.0.0.1:{port}"
    p.stop()


MERGED_ADMIN = ""


def mount_calls(tool: str) -> float:
    """`turnpike_calls_total` of passed tools/call for `tool`, scraped from the admin listener."""
    r = httpx.get(f"{MERGED_ADMIN}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("turnpike_calls_total{") and 'method="tools/call"' in line \
                and f'tool="{tool}"' in line and 'outcome="passed"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_merged_endpoint_python_sdk(merged: str) -> None:
    async def main():
        async with Client(merged + "/all/mcp") as c:
            names = sorted(t.name for t in (await c.list_tools()).tools)
            web = await c.call_tool("web_echo", {"message": "to the web"})
            local = await c.call_tool("local_echo", {"text": "to the pipe"})
            return c.protocol_version, names, web, local

    version, names, web, local = anyio.run(main)
    assert version == MODERN
    assert "web_echo" in names and "local_echo" in names and "echo" not in names, names
    assert "get-sum" in names and "whoami" in names and "add" in names, names
    assert web.content[0].text == "Echo: to the web"
    assert local.content[0].text == "to the pipe"


def test_merged_endpoint_ts_sdk(merged: str) -> None:
    require_file(NODE22, "run scripts/setup-test-deps")
    # A free tool of the stdio member, and a priced one of the HTTP member (PoW solved by the
    # client through `turnpike solve`).
    out = run_ts(merged + "/all/mcp", ("local_echo", {"text": "ts"}), ("get-sum", {"a": 20, "b": 22}))
    assert out["serverVersion"]["name"] == "turnpike-merged"
    assert out["prices"]["local_echo"] == {"free": True, "offers": []}
    check_flow(out, "ts", "The sum of 20 and 22 is 42.")


def test_mounts_serve_their_own_upstream(merged: str) -> None:
    async def main():
        async with Client(merged + "/local/mcp") as c:
            local = sorted(t.name for t in (await c.list_tools()).tools)
        async with Client(merged + "/web/mcp", mode="legacy") as c:
            web = await c.call_tool("echo", {"message": "mounted"})
        return local, web

    before = mount_calls("other")
    local, web = anyio.run(main)
    assert local == ["add", "echo", "slow", "whoami"]
    # The mounts' gates count into the process's metrics.
    assert mount_calls("other") == before + 1
    assert web.content[0].text == "Echo: mounted"
    # The main path serves nothing when only mounts are configured.
    r = httpx.post(merged + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                   headers={"Accept": ACCEPT, "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 404
