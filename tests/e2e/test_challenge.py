"""A priced call without a credential gets a challenge, in both delivery modes, in the documented
shape."""

from __future__ import annotations

import re
import time

import anyio
from mcp import Client

from conftest import DEFAULT_EFFORT, RESOURCE_EFFORT, SUBPUZZLES, SUM_EFFORT
from turnpike_e2e import (
    Gateway,
    RawSession,
    Token,
    parse_www_authenticate,
    pow_challenges,
    target_for,
)

REFERENCE_RATE = 8_000_000  # [pow] reference_hashrate's default
HEADER_PARAMS = ["challenge", "algorithm", "effort", "subpuzzles", "target", "expires", "expected_seconds"]


def check_details(details: dict, effort: int, expiry_secs: int = 300) -> Token:
    """Checks one challenge's JSON details against the documented wire format (docs/POW.md) and returns its token."""
    assert details["rail"] == "pow"
    assert details["scheme"] == "PoW"
    assert details["algorithm"] == "sha256"
    assert details["effort"] == effort
    assert details["subpuzzles"] == SUBPUZZLES
    assert re.fullmatch(r"[0-9a-f]{16}", details["target"]), details["target"]
    assert int(details["target"], 16) == target_for(effort, SUBPUZZLES)
    assert isinstance(details["expires"], int)
    assert isinstance(details["expected_seconds"], (int, float))
    assert abs(details["expected_seconds"] - effort / REFERENCE_RATE) < 1e-9

    token = Token.decode(details["challenge"])
    assert token.version == 1
    assert token.algorithm == 1
    assert token.effort == effort
    assert token.subpuzzles == SUBPUZZLES
    assert token.expires_at == details["expires"]
    assert token.expires_at - token.issued_at == expiry_secs
    assert abs(token.issued_at - time.time()) < 30

    scheme, params = parse_www_authenticate(details["www_authenticate"])
    assert scheme == "PoW"
    assert [k for k, _ in params] == HEADER_PARAMS, details["www_authenticate"]
    p = dict(params)
    assert p["challenge"] == details["challenge"]
    assert p["algorithm"] == "sha256"
    assert int(p["effort"]) == effort
    assert int(p["subpuzzles"]) == SUBPUZZLES
    assert p["target"] == details["target"]
    assert int(p["expires"]) == details["expires"]
    assert abs(float(p["expected_seconds"]) - effort / REFERENCE_RATE) < 1e-9
    return token


def check_http_402(resp, request_id: int, effort: int, code: int = -31402, status: int = 402) -> dict:
    """Checks a raw HTTP challenge response and returns its JSON-RPC error."""
    assert resp.status_code == status, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert resp.headers["content-type"].startswith("application/json")
    lines = resp.headers.get_list("www-authenticate")
    assert len(lines) == 1, lines
    assert lines[0].startswith("PoW ")

    body = resp.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == request_id
    assert "result" not in body
    err = body["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    challenges = err["data"]["challenges"]
    assert isinstance(err["data"]["refusals"], list)
    assert len(challenges) == 1
    check_details(challenges[0], effort)
    assert challenges[0]["www_authenticate"] == lines[0]
    return err


def test_http_402_for_a_call_outside_a_session(gw: Gateway) -> None:
    """No session headers, challenge_mode auto: a plain HTTP 402."""
    with RawSession(gw.url) as s:
        rid = s._next_id
        r, _ = s.call_tool("get-sum", {"a": 1, "b": 2}, session=False)
        err = check_http_402(r, rid, SUM_EFFORT)
        assert err["data"]["refusals"] == []


def test_http_402_when_asked_for_in_a_session(gw: Gateway) -> None:
    """`Turnpike-Challenge: http` overrides the in-band default of a session."""
    with RawSession(gw.url) as s:
        s.initialize()
        rid = s._next_id
        r, _ = s.call_tool("get-tiny-image", {}, headers={"Turnpike-Challenge": "http"})
        check_http_402(r, rid, DEFAULT_EFFORT)


def check_in_band(result: dict, effort: int) -> Token:
    assert result["isError"] is True
    texts = [c["text"] for c in result["content"] if c.get("type") == "text"]
    assert texts and "_meta" in texts[0], texts
    tp = result["structuredContent"]["turnpike"]
    assert isinstance(tp["refusals"], list)
    assert len(tp["challenges"]) == 1
    return check_details(tp["challenges"][0], effort)


def test_in_band_challenge_in_a_session(gw: Gateway) -> None:
    """Session headers and challenge_mode auto: HTTP 200 with an isError tools/call result."""
    with RawSession(gw.url) as s:
        s.initialize()
        r, m = s.call_tool("get-sum", {"a": 1, "b": 2})
        assert r.status_code == 200, r.text[:500]
        assert r.headers["content-type"].startswith("application/json")
        assert m is not None and "result" in m, r.text[:500]
        check_in_band(m["result"], SUM_EFFORT)


def test_in_band_when_asked_for_outside_a_session(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        r, m = s.call_tool("get-sum", {"a": 1, "b": 2}, headers={"Turnpike-Challenge": "in-band"},
                           session=False)
        assert r.status_code == 200, r.text[:500]
        assert m is not None
        check_in_band(m["result"], SUM_EFFORT)


def test_sdk_sees_an_in_band_challenge(gw: Gateway) -> None:
    """The Python SDK's call_tool returns the challenge as an error result (no exception)."""

    async def main():
        async with Client(gw.url) as c:
            return await c.call_tool("get-sum", {"a": 1, "b": 2})

    result = anyio.run(main)
    assert result.is_error is True
    check_in_band(result.model_dump(by_alias=True, exclude_none=True), SUM_EFFORT)


def test_fresh_challenge_each_time(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        r1, _ = s.call_tool("get-sum", {"a": 1, "b": 2}, session=False)
        r2, _ = s.call_tool("get-sum", {"a": 1, "b": 2}, session=False)
        t1 = Token.decode(dict(parse_www_authenticate(pow_challenges(r1)[0])[1])["challenge"])
        t2 = Token.decode(dict(parse_www_authenticate(pow_challenges(r2)[0])[1])["challenge"])
        assert t1.nonce != t2.nonce
        assert t1.tag != t2.tag
        # Same call, same scope.
        assert t1.scope == t2.scope
        r3, _ = s.call_tool("get-sum", {"a": 2, "b": 2}, session=False)
        t3 = Token.decode(dict(parse_www_authenticate(pow_challenges(r3)[0])[1])["challenge"])
        assert t3.scope != t1.scope


def test_priced_method_other_than_tools_call(gw: Gateway) -> None:
    """resources/read is priced by [methods."resources/read"]; resources/list stays free."""
    with RawSession(gw.url) as s:
        s.initialize()
        r, m = s.request("resources/list", {})
        assert r.status_code == 200 and m is not None and "result" in m, r.text[:300]
        uri = m["result"]["resources"][0]["uri"]
        rid = s._next_id
        r, _ = s.request("resources/read", {"uri": uri}, headers={"Turnpike-Challenge": "http"})
        check_http_402(r, rid, RESOURCE_EFFORT)
