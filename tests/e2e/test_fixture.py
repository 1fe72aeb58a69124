"""The gateway in front of the project's own fixture server (rmcp), in its three serving modes:
stateful Streamable HTTP, stateless HTTP with JSON replies, and stdio."""

from __future__ import annotations

import json
import time

import anyio
from mcp import Client

from turnpike_e2e import Gateway, RawSession, authorization, cli_solve_meta, parse_www_authenticate, pow_challenges, py_solve


async def _paid_call(c: Client, tool: str, args: dict, **kw):
    first = await c.call_tool(tool, args)
    assert first.is_error is True, first
    assert first.structured_content["turnpike"]["challenges"], first
    meta = cli_solve_meta(stdin=json.dumps(first.model_dump(by_alias=True, exclude_none=True)))
    return await c.call_tool(tool, args, meta=meta, **kw)


def test_free_and_paid_calls(gw_fixture: tuple[Gateway, str]) -> None:
    gw, _ = gw_fixture

    async def main():
        async with Client(gw.url) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            echo = await c.call_tool("echo", {"text": "hello"})
            added = await _paid_call(c, "add", {"a": 2, "b": 3})
            return tools, echo, added

    tools, echo, added = anyio.run(main)
    assert {"echo", "add", "slow", "whoami"} <= set(tools)
    assert tools["echo"].meta["turnpike/price"]["free"] is True
    assert tools["add"].meta["turnpike/price"]["free"] is False
    assert echo.is_error is False and echo.content[0].text == "hello"
    assert added.is_error is False and added.content[0].text == "5"


def test_progress_from_the_fixture(gw_fixture: tuple[Gateway, str]) -> None:
    gw, _ = gw_fixture
    steps, delay_ms = 5, 200

    async def main():
        async with Client(gw.url) as c:
            events: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                events.append(time.monotonic())

            result = await _paid_call(c, "slow", {"steps": steps, "delay_ms": delay_ms},
                                      progress_callback=on_progress, read_timeout_seconds=30)
            return events, time.monotonic(), result

    events, t_result, result = anyio.run(main)
    assert result.is_error is False and result.content[0].text == "done", result
    assert len(events) == steps, events
    assert all(t < t_result for t in events)
    assert events[-1] - events[0] >= 0.5 * (steps - 1) * delay_ms / 1000


def test_whoami_sees_no_credentials(gw_fixture: tuple[Gateway, str]) -> None:
    """The fixture's whoami shows the headers it received: none of the caller's credentials."""
    gw, mode = gw_fixture
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("whoami", {}, headers={"Turnpike-Challenge": "http"})
        assert r.status_code == 402, r.text[:300]
        token = dict(parse_www_authenticate(pow_challenges(r)[0])[1])["challenge"]
        headers = {
            "Authorization": authorization(token, py_solve(token)),
            "Macaroon": "AgEEbHNhdA",
            "DPoP": "eyJhbGciOiJFUzI1NiJ9.e30.sig",
            "Turnpike-Challenge": "http",
        }
        r, m = s.call_tool("whoami", {}, headers=headers)
        assert r.status_code == 200, r.text[:300]
        seen = m["result"]["structuredContent"]
    if mode == "stdio":
        assert seen["transport"] == "stdio"
        return
    assert seen["transport"] == "http"
    names = set(seen["headers"])
    leaked = sorted(n for n in names if n in {"authorization", "macaroon", "dpop"} or n.startswith("turnpike-"))
    assert not leaked, f"forwarded to the upstream: {leaked}"
    assert token not in json.dumps(seen)
