"""Requests the gateway refuses before any upstream sees them."""

from __future__ import annotations

import httpx

from turnpike_e2e import ACCEPT, PROTOCOL, Gateway, RawSession


def test_batch_array_refused(gw: Gateway) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "get-sum", "arguments": {"a": 1, "b": 2}}},
    ]
    with RawSession(gw.url) as s:
        s.initialize()
        r = s.post(batch)
        assert r.status_code == 400, f"HTTP {r.status_code}: {r.text[:300]}"
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["jsonrpc"] == "2.0"
        assert body["error"]["code"] == -32600
        assert "batch" in body["error"]["message"]


def test_bad_json_refused(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        r = s.post(None, raw=b'{"jsonrpc": "2.0", "id": 1, "method": ', session=False)
        assert r.status_code == 400, f"HTTP {r.status_code}: {r.text[:300]}"
        assert r.json()["error"]["code"] == -32700


def test_foreign_host_refused(gw: Gateway) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "x", "version": "0"}}}
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", "Host": "evil.example.com"}
    r = httpx.post(gw.url, json=body, headers=headers, timeout=10)
    assert r.status_code == 403, f"HTTP {r.status_code}: {r.text[:300]}"
    assert r.json()["error"]["code"] == -31403

    headers = {"Accept": ACCEPT, "Content-Type": "application/json",
               "Origin": "http://evil.example.com"}
    r = httpx.post(gw.url, json=body, headers=headers, timeout=10)
    assert r.status_code == 403, f"HTTP {r.status_code}: {r.text[:300]}"
    assert r.json()["error"]["code"] == -31403
