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


def test_wrong_content_type_refused(gw: Gateway) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    r = httpx.post(gw.url, content=body, headers={"Accept": ACCEPT, "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415, f"HTTP {r.status_code}: {r.text[:300]}"


def test_oversized_body_refused(gw: Gateway) -> None:
    """server.max_body_bytes defaults to 4 MiB."""
    big = "x" * (4 * 1024 * 1024 + 1024)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": big}}}
    with RawSession(gw.url) as s:
        s.initialize()
        r = s.post(body)
        assert r.status_code == 413, f"HTTP {r.status_code}: {r.text[:300]}"
        assert r.json()["error"]["code"] == -31413


def test_unreachable_upstream_is_502(work) -> None:
    from turnpike_e2e import GatewayConfig, free_port, start_gateway

    dead = free_port()  # nothing listens there
    gw = start_gateway(work, "gw-dead-upstream", GatewayConfig(upstream_url=f"http://127.0.0.1:{dead}/mcp"))
    try:
        with RawSession(gw.url) as s:
            rid = s._next_id
            r, _ = s.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                            "clientInfo": {"name": "x", "version": "0"}}, session=False)
            assert r.status_code == 502, f"HTTP {r.status_code}: {r.text[:300]}"
            body = r.json()
            assert body["error"]["code"] == -31502
            # JSON-RPC: the id is known, so the error must carry it (a client matching replies by
            # id would otherwise wait for an answer that never comes).
            assert body["id"] == rid, f"502 body carries id {body['id']!r}, not the request's {rid}"
    finally:
        gw.proc.stop()
