"""Real SDK clients across eras, through the gateway's two bridges.

- A 2026-07-28 client (the Python SDK, modern mode) in front of a server that speaks only the
  2025 revisions (`turnpike-fixture --conformance --era 2025`): the server asks for input with
  elicitation/sampling/roots *requests* in the middle of a call; the gateway turns each into an
  `input_required` result, and the SDK's callbacks answer it on the retry.
- A 2025 client (the Python SDK in legacy mode) in front of a server that speaks only
  2026-07-28 (`--era 2026-07-28`): `resources/subscribe` and the session's GET stream are bridged
  to the server's `subscriptions/listen`, so list-changed and resource-updated notifications
  reach the legacy client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest
from mcp import Client, types

from conftest import SUBPUZZLES
from test_eras import start_fixture
from turnpike_e2e import Gateway, GatewayConfig, start_gateway

MODERN = "2026-07-28"


def gateway_in_front_of(work: Path, name: str, era: str) -> Iterator[Gateway]:
    up, url = start_fixture(work, f"fixture-{name}", era, conformance=True)
    # No [tools.*] table: every tool is free; this measures the translation, not the rails.
    cfg = GatewayConfig(upstream_url=url, subpuzzles=SUBPUZZLES)
    gw = start_gateway(work, f"gw-{name}", cfg)
    try:
        yield gw
    finally:
        gw.proc.stop()
        up.stop()


@pytest.fixture(scope="module")
def legacy_upstream(work: Path) -> Iterator[Gateway]:
    yield from gateway_in_front_of(work, "bridge-legacy", "2025")


@pytest.fixture(scope="module")
def modern_upstream(work: Path) -> Iterator[Gateway]:
    yield from gateway_in_front_of(work, "bridge-modern", MODERN)


# --- a modern client, a legacy server asking for input -------------------------------------------


def test_modern_sdk_answers_a_legacy_servers_requests(legacy_upstream: Gateway) -> None:
    asked: list[str] = []

    async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def sample(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="Paris"))

    async def roots(context) -> types.ListRootsResult:
        asked.append("roots")
        return types.ListRootsResult(roots=[types.Root(uri="file:///a", name="a"),
                                            types.Root(uri="file:///b", name="b")])

    async def main():
        async with Client(legacy_upstream.url, elicitation_callback=elicit, sampling_callback=sample,
                          list_roots_callback=roots) as c:
            out = {"version": c.protocol_version}
            for tool in ("test_input_required_result_elicitation",
                         "test_input_required_result_sampling",
                         "test_input_required_result_list_roots"):
                r = await c.call_tool(tool, {})
                assert r.is_error is False, r
                out[tool] = r.content[0].text
            return out

    out = anyio.run(main)
    # The client spoke 2026-07-28 to the gateway, which spoke 2025 to the server.
    assert out["version"] == MODERN
    assert out["test_input_required_result_elicitation"] == "Hello, Ada!"
    assert out["test_input_required_result_sampling"] == "Sampling result: Paris"
    assert out["test_input_required_result_list_roots"] == "Found 2 root(s)"
    assert asked == ["elicitation", "sampling", "roots"]


def test_modern_sdk_multi_round_through_a_legacy_server(legacy_upstream: Gateway) -> None:
    rounds: list[str] = []

    async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        rounds.append(params.message)
        answer = {"Step 1: What is your name?": {"name": "Ada"},
                  "Step 2: What is your favorite color?": {"color": "teal"}}[params.message]
        return types.ElicitResult(action="accept", content=answer)

    async def main():
        async with Client(legacy_upstream.url, elicitation_callback=elicit) as c:
            return await c.call_tool("test_input_required_result_multi_round", {})

    r = anyio.run(main)
    assert r.is_error is False, r
    # Two rounds of questions, each answered by the SDK on a retry; the server kept the first
    # answer across them.
    assert rounds == ["Step 1: What is your name?", "Step 2: What is your favorite color?"]
    assert r.content[0].text == "Multi-round complete for Ada who likes teal"


def test_modern_sdk_without_the_capability_is_told_so(legacy_upstream: Gateway) -> None:
    async def main():
        async with Client(legacy_upstream.url) as c:
            try:
                r = await c.call_tool("test_input_required_result_elicitation", {})
            except Exception as e:  # the SDK raises an MCP error for a JSON-RPC error
                return str(e)
            return r

    out = anyio.run(main)
    # No hang: the call ends with an error that names the missing capability.
    text = out if isinstance(out, str) else (out.content[0].text if out.content else "")
    assert "did not declare the elicitation capability" in text, out


# --- a legacy client, a modern server's change notifications -------------------------------------


def notification_method(message: Any) -> str | None:
    for candidate in (message, getattr(message, "root", None)):
        method = getattr(candidate, "method", None)
        if isinstance(method, str):
            return method
    return None


def test_legacy_sdk_hears_a_modern_servers_changes(modern_upstream: Gateway) -> None:
    seen: list[tuple[str, Any]] = []

    async def handler(message: Any) -> None:
        method = notification_method(message)
        if method and method.startswith("notifications/"):
            params = getattr(message, "params", None) or getattr(getattr(message, "root", None), "params", None)
            seen.append((method, getattr(params, "uri", None)))

    async def wait_for(pred, what: str) -> None:
        with anyio.fail_after(20):
            while not pred():
                await anyio.sleep(0.05)

    async def main():
        async with Client(modern_upstream.url, mode="legacy", message_handler=handler) as c:
            assert c.protocol_version != MODERN
            await c.subscribe_resource("test://watched-resource")
            # The SDK opens its GET stream in the background after initializing; a change made
            # before that stream is up has nowhere to go (a 2025 server drops it too), so the
            # change is triggered again until the stream carries one.
            updated = ("notifications/resources/updated", "test://watched-resource")
            with anyio.fail_after(20):
                while updated not in seen:
                    await c.call_tool("test_trigger_resource_change", {})
                    with anyio.move_on_after(1):
                        while updated not in seen:
                            await anyio.sleep(0.05)
            await c.call_tool("test_trigger_tool_change", {})
            await wait_for(lambda: any(m == "notifications/tools/list_changed" for m, _ in seen),
                           "tools/list_changed")
            # After unsubscribing, updates of that resource no longer arrive; list changes do.
            await c.unsubscribe_resource("test://watched-resource")
            before = sum(1 for m, _ in seen if m == "notifications/resources/updated")
            await c.call_tool("test_trigger_resource_change", {})
            await c.call_tool("test_trigger_tool_change", {})
            await wait_for(lambda: sum(1 for m, _ in seen if m == "notifications/tools/list_changed") >= 2,
                           "second tools/list_changed")
            after = sum(1 for m, _ in seen if m == "notifications/resources/updated")
            return before, after

    before, after = anyio.run(main)
    assert before >= 1 and after == before, seen
