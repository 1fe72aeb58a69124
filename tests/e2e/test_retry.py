"""Solving a challenge and retrying: the call goes through once, for that call only, before
expiry, with an untampered challenge."""

from __future__ import annotations

import json
import time

import anyio
from mcp import Client

from conftest import SUM_EFFORT
from test_challenge import check_http_402
from turnpike_e2e import (
    Gateway,
    RawSession,
    Token,
    authorization,
    b64url_encode,
    check_solution,
    cli_solve,
    cli_solve_meta,
    parse_authorization,
    parse_www_authenticate,
    pow_challenges,
    pow_meta,
    puzzle_hash,
    py_solve,
    target_for,
)

HTTP = {"Turnpike-Challenge": "http"}


def sum_text(a: int, b: int) -> str:
    return f"The sum of {a} and {b} is {a + b}."


def refusal_reasons(err_or_tp: dict) -> list[str]:
    data = err_or_tp.get("data", err_or_tp)
    return [r["reason"] for r in data.get("refusals", []) if r.get("rail") == "pow"]


def challenge_of(resp) -> str:
    """The token of the PoW WWW-Authenticate line of a 402."""
    lines = pow_challenges(resp)
    assert lines, f"no PoW challenge in HTTP {resp.status_code}: {resp.text[:300]}"
    return dict(parse_www_authenticate(lines[0])[1])["challenge"]


def first_402(s: RawSession, tool: str, args: dict) -> tuple[str, str]:
    """Asks for a challenge; returns (WWW-Authenticate line, token)."""
    r, _ = s.call_tool(tool, args, headers=HTTP)
    assert r.status_code == 402, f"HTTP {r.status_code}: {r.text[:300]}"
    line = pow_challenges(r)[0]
    return line, dict(parse_www_authenticate(line)[1])["challenge"]


def test_sdk_solve_and_retry_in_meta(gw: Gateway) -> None:
    """The SDK gets an in-band challenge, `turnpike solve --meta` reads the whole result from
    stdin, the SDK retries with `_meta` and gets the tool's real result; a replay of the same
    credential gets a fresh challenge and an "already used" refusal."""

    async def main():
        async with Client(gw.url) as c:
            first = await c.call_tool("get-sum", {"a": 1, "b": 2})
            assert first.is_error is True
            meta = cli_solve_meta(stdin=json.dumps(first.model_dump(by_alias=True, exclude_none=True)))
            paid = await c.call_tool("get-sum", {"a": 1, "b": 2}, meta=meta)
            replay = await c.call_tool("get-sum", {"a": 1, "b": 2}, meta=meta)
            return first, meta, paid, replay

    first, meta, paid, replay = anyio.run(main)
    old_token = first.structured_content["turnpike"]["challenges"][0]["challenge"]
    assert meta["turnpike/pow"]["challenge"] == old_token

    assert paid.is_error is False, paid
    assert paid.content[0].text == sum_text(1, 2)
    assert not (paid.structured_content or {}).get("turnpike")

    assert replay.is_error is True
    tp = replay.structured_content["turnpike"]
    assert any("already used" in r for r in refusal_reasons(tp)), tp
    assert tp["challenges"] and tp["challenges"][0]["challenge"] != old_token


def test_http_solve_and_retry_with_authorization(gw: Gateway) -> None:
    """402, `turnpike solve '<WWW-Authenticate>'`, retry with the Authorization header; the
    replay gets a fresh 402 with an "already used" refusal."""
    with RawSession(gw.url) as s:
        s.initialize()
        line, token = first_402(s, "get-sum", {"a": 3, "b": 4})
        auth = cli_solve(line)
        got_token, solution = parse_authorization(auth)
        assert got_token == token
        assert check_solution(token, solution), "turnpike solve's answer does not solve the puzzle"

        r, m = s.call_tool("get-sum", {"a": 3, "b": 4}, headers={**HTTP, "Authorization": auth})
        assert r.status_code == 200, r.text[:500]
        assert m is not None and m["result"]["content"][0]["text"] == sum_text(3, 4), m
        assert not pow_challenges(r)

        rid = s._next_id
        r, _ = s.call_tool("get-sum", {"a": 3, "b": 4}, headers={**HTTP, "Authorization": auth})
        err = check_http_402(r, rid, SUM_EFFORT)
        assert any("already used" in x for x in refusal_reasons(err)), err
        assert challenge_of(r) != token


def test_cli_solves_a_402_body_and_a_bare_token(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("get-sum", {"a": 5, "b": 6}, headers=HTTP)
        assert r.status_code == 402
        auth = cli_solve(stdin=r.text)
        r2, m = s.call_tool("get-sum", {"a": 5, "b": 6}, headers={**HTTP, "Authorization": auth})
        assert r2.status_code == 200, r2.text[:500]
        assert m["result"]["content"][0]["text"] == sum_text(5, 6)

        _, token = first_402(s, "get-sum", {"a": 7, "b": 8})
        auth = cli_solve(token)
        assert parse_authorization(auth)[0] == token
        r3, m3 = s.call_tool("get-sum", {"a": 7, "b": 8}, headers={**HTTP, "Authorization": auth})
        assert r3.status_code == 200, r3.text[:500]
        assert m3["result"]["content"][0]["text"] == sum_text(7, 8)


def test_independent_solver_accepted(gw: Gateway) -> None:
    """A solution computed from docs/POW.md alone (Python here), sent in `_meta` as a JSON array
    of integers, is accepted: the gateway implements the documented puzzle."""
    with RawSession(gw.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 10, "b": 20})
        solution = py_solve(token)
        meta = {"turnpike/pow": {"challenge": token, "solution": solution}}
        r, m = s.call_tool("get-sum", {"a": 10, "b": 20}, meta=meta, headers=HTTP)
        assert r.status_code == 200, r.text[:500]
        assert m["result"]["content"][0]["text"] == sum_text(10, 20)


def test_solution_for_other_arguments_refused(gw: Gateway) -> None:
    """A credential bound to get-sum(1, 1) does not buy get-sum(1, 2) — and, refused for scope
    before it is spent, it still buys get-sum(1, 1) afterwards."""
    with RawSession(gw.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 1, "b": 1})
        auth = authorization(token, py_solve(token))

        rid = s._next_id
        r, _ = s.call_tool("get-sum", {"a": 1, "b": 2}, headers={**HTTP, "Authorization": auth})
        err = check_http_402(r, rid, SUM_EFFORT)
        assert any("bound to another call" in x for x in refusal_reasons(err)), err

        r, m = s.call_tool("get-sum", {"a": 1, "b": 1}, headers={**HTTP, "Authorization": auth})
        assert r.status_code == 200, r.text[:500]
        assert m["result"]["content"][0]["text"] == sum_text(1, 1)


def test_solution_for_another_tool_refused(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 2, "b": 2})
        meta = pow_meta(token, py_solve(token))
        r, m = s.call_tool("get-tiny-image", {}, meta=meta)
        assert r.status_code == 200, r.text[:300]
        result = m["result"]
        assert result["isError"] is True
        tp = result["structuredContent"]["turnpike"]
        assert any("bound to another call" in x for x in refusal_reasons(tp)), tp
        assert tp["challenges"][0]["challenge"] != token


def test_expired_challenge_refused(gw_short: Gateway) -> None:
    with RawSession(gw_short.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 9, "b": 9})
        t = Token.decode(token)
        assert t.expires_at - t.issued_at == 2
        auth = authorization(token, py_solve(token))
        # Wait for the documented deadline (now >= expires_at), measured in whole seconds.
        while time.time() < t.expires_at + 0.2:
            time.sleep(0.1)
        rid = s._next_id
        r, _ = s.call_tool("get-sum", {"a": 9, "b": 9}, headers={**HTTP, "Authorization": auth})
        assert r.status_code == 402, r.text[:500]
        body = r.json()
        assert body["id"] == rid and body["error"]["code"] == -31402
        assert any("expired" in x for x in refusal_reasons(body["error"])), body
        assert challenge_of(r) != token


def test_tampered_challenge_is_401(gw: Gateway) -> None:
    """A challenge whose bytes were changed (tag no longer matches) is a forged credential: 401,
    -31401, even with a correct solution of the tampered bytes."""
    with RawSession(gw.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 4, "b": 4})
        raw = bytearray(Token.decode(token).raw)
        raw[70] ^= 0x01  # inside the random nonce
        forged = b64url_encode(bytes(raw))
        auth = authorization(forged, py_solve(forged))
        rid = s._next_id
        r, _ = s.call_tool("get-sum", {"a": 4, "b": 4}, headers={**HTTP, "Authorization": auth})
        assert r.status_code == 401, f"HTTP {r.status_code}: {r.text[:500]}"
        body = r.json()
        assert body["id"] == rid
        assert body["error"]["code"] == -31401
        assert refusal_reasons(body["error"]), body
        # The genuine challenge was not spent by the forgery.
        auth = authorization(token, py_solve(token))
        r, m = s.call_tool("get-sum", {"a": 4, "b": 4}, headers={**HTTP, "Authorization": auth})
        assert r.status_code == 200, r.text[:500]
        assert m["result"]["content"][0]["text"] == sum_text(4, 4)


def test_wrong_solution_is_401(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        s.initialize()
        _, token = first_402(s, "get-sum", {"a": 6, "b": 6})
        t = Token.decode(token)
        target = target_for(t.effort, t.subpuzzles)
        wrong = []
        for i in range(t.subpuzzles):
            n = 0
            while puzzle_hash(t.raw, i, n) < target:
                n += 1
            wrong.append(n)
        r, _ = s.call_tool("get-sum", {"a": 6, "b": 6},
                           headers={**HTTP, "Authorization": authorization(token, wrong)})
        assert r.status_code == 401, f"HTTP {r.status_code}: {r.text[:500]}"
        assert r.json()["error"]["code"] == -31401

        # Too few nonces.
        right = py_solve(token)
        r, _ = s.call_tool("get-sum", {"a": 6, "b": 6},
                           headers={**HTTP, "Authorization": authorization(token, right[:-1])})
        assert r.status_code == 401, f"HTTP {r.status_code}: {r.text[:500]}"


def test_malformed_credentials_are_401(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        s.initialize()
        for bad in ('PoW challenge="not-a-token", solution="1,2,3,4"',
                    'PoW challenge="' + "A" * 148 + '", solution="1,2,3,4"',
                    "PoW garbage"):
            r, _ = s.call_tool("get-sum", {"a": 0, "b": 0}, headers={**HTTP, "Authorization": bad})
            assert r.status_code == 401, f"{bad!r}: HTTP {r.status_code}: {r.text[:300]}"
            assert r.json()["error"]["code"] == -31401
