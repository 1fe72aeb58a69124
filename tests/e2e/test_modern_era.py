"""MCP 2026-07-28 (routing headers, no sessions) through the gateway, spoken by hand, in front of
the fixture server (rmcp speaks 2026-07-28; server-everything does not)."""

from __future__ import annotations

import httpx

from turnpike_e2e import ACCEPT, Gateway

MODERN = "2026-07-28"


def post(gw: Gateway, body: dict, **headers: str) -> httpx.Response:
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN}
    h.update(headers)
    return httpx.post(gw.url, json=body, headers=h, timeout=30)


def call(name: str, args: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}}


def test_in_band_challenge_is_a_complete_result(gw_fixture: tuple[Gateway, str]) -> None:
    """On 2026-07-28 a result carries `resultType` ("complete" for a final one); the in-band
    challenge is a final tools/call result and must say so, or 2026-07-28 clients (the Python SDK
    among them) cannot parse it."""
    gw, _ = gw_fixture
    r = post(gw, call("add", {"a": 1, "b": 2}), **{"Mcp-Method": "tools/call", "Mcp-Name": "add"})
    assert r.status_code == 200, r.text[:300]
    result = r.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["turnpike"]["challenges"]
    assert result.get("resultType") == "complete", result


def test_routing_header_mismatch_refused(gw_fixture: tuple[Gateway, str]) -> None:
    gw, _ = gw_fixture
    for headers in ({"Mcp-Method": "tools/list", "Mcp-Name": "add"},
                    {"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
                    {"Mcp-Method": "tools/call"}):
        r = post(gw, call("add", {"a": 1, "b": 2}), **headers)
        assert r.status_code == 400, f"{headers}: HTTP {r.status_code} {r.text[:300]}"
        assert r.json()["error"]["code"] == -32020, r.text[:300]
    # A free tool named in the Mcp-Name header of a priced call must not get it through free.
    r = post(gw, call("add", {"a": 1, "b": 2}), **{"Mcp-Method": "tools/call", "Mcp-Name": "echo"})
    assert r.status_code == 400
