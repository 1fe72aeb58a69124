"""Free methods pass through the gateway untouched, and tools/list carries prices."""

from __future__ import annotations

import anyio
from mcp import Client

from conftest import DEFAULT_EFFORT, SUBPUZZLES, SUM_EFFORT
from turnpike_e2e import Gateway, RawSession

PRICE_KEY = "turnpike/price"
REFERENCE_RATE = 8_000_000  # [pow] reference_hashrate's default


def _tools_by_name(result) -> dict[str, dict]:
    return {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in result.tools}


def test_sdk_session_and_free_tool(gw: Gateway, everything: str) -> None:
    """The Python SDK connects through the gateway, lists tools and calls a free tool; what it
    sees is what it sees straight at the upstream, but for the price annotation."""

    async def main() -> tuple[dict, dict, object, object]:
        async with Client(everything) as direct:
            want_tools = _tools_by_name(await direct.list_tools())
            want_echo = await direct.call_tool("echo", {"message": "through the turnpike"})
        async with Client(gw.url) as c:
            assert c.server_info is not None
            assert c.server_info.name == "mcp-servers/everything"
            got_tools = _tools_by_name(await c.list_tools())
            got_echo = await c.call_tool("echo", {"message": "through the turnpike"})
        return want_tools, got_tools, want_echo, got_echo

    want_tools, got_tools, want_echo, got_echo = anyio.run(main)

    assert sorted(got_tools) == sorted(want_tools)
    for name, tool in got_tools.items():
        meta = dict(tool.pop("_meta", {}) or {})
        assert PRICE_KEY in meta, f"tool {name} has no {PRICE_KEY} in _meta"
        meta.pop(PRICE_KEY)
        if meta:
            tool["_meta"] = meta
        assert tool == want_tools[name], f"tool {name} changed on the way"

    assert got_echo.is_error is False
    assert got_echo.model_dump(by_alias=True, exclude_none=True) == want_echo.model_dump(
        by_alias=True, exclude_none=True
    )


def test_tools_list_prices(gw: Gateway) -> None:
    async def main():
        async with Client(gw.url) as c:
            return _tools_by_name(await c.list_tools())

    tools = anyio.run(main)
    assert tools["echo"]["_meta"][PRICE_KEY] == {"free": True, "offers": []}

    for name, effort in (("get-sum", SUM_EFFORT), ("get-tiny-image", DEFAULT_EFFORT),
                         ("trigger-long-running-operation", DEFAULT_EFFORT)):
        price = tools[name]["_meta"][PRICE_KEY]
        assert price["free"] is False, name
        assert len(price["offers"]) == 1, price
        offer = price["offers"][0]
        assert offer["rail"] == "pow"
        assert offer["effort"] == effort, (name, offer)
        assert abs(offer["expected_seconds"] - effort / REFERENCE_RATE) < 1e-9, offer
    assert SUBPUZZLES >= 1


def test_raw_initialize_and_list_identical(gw: Gateway, everything: str) -> None:
    """Spoken by hand: initialize's result and the free list methods are the upstream's."""
    with RawSession(everything) as direct, RawSession(gw.url) as through:
        want = direct.initialize()
        got = through.initialize()
        assert got == want

        for method in ("prompts/list", "resources/list", "resources/templates/list"):
            r1, m1 = direct.request(method, {})
            r2, m2 = through.request(method, {})
            assert r2.status_code == 200, f"{method}: HTTP {r2.status_code} {r2.text[:300]}"
            assert m2 == {**m1, "id": m2["id"]}, method

        r, m = through.request("ping")
        assert r.status_code == 200 and m is not None and m.get("result") == {}, r.text[:300]


def test_unpriced_tool_needs_no_credential(gw: Gateway) -> None:
    with RawSession(gw.url) as s:
        s.initialize()
        r, m = s.call_tool("echo", {"message": "free"}, headers={"Turnpike-Challenge": "http"})
        assert r.status_code == 200, r.text[:300]
        assert m is not None and m["result"]["content"][0]["text"] == "Echo: free"
        assert not r.headers.get_list("www-authenticate")
