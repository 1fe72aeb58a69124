"""A 2025-era client answering a 2026-07-28 server's input_required results through the gateway.

The fixture in modern-only mode has a `confirm` tool that asks for elicitation (and/or
sampling) with `input_required` results for a number of rounds and then returns every answer it
was given. The gateway turns each round into requests to the legacy client on the call's
response stream, takes the client's responses (POSTs of their own) and retries upstream with
`inputResponses` and `requestState`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from mcp import Client, types

from conftest import DEFAULT_EFFORT, SUBPUZZLES
from test_eras import start_fixture
from turnpike_e2e import (
    ACCEPT,
    DEPS,
    NODE22,
    ROOT,
    Gateway,
    GatewayConfig,
    parse_sse,
    require_file,
    response_messages,
    start_gateway,
)

SCRIPT = Path(__file__).with_name("ts_elicit.mjs")
LEGACY = "2025-11-25"


@pytest.fixture(scope="module")
def modern_input(work: Path) -> Iterator[Gateway]:
    """The gateway (era auto) in front of the fixture speaking only 2026-07-28, confirm free."""
    up, url = start_fixture(work, "fixture-era-input", "2026-07-28")
    cfg = GatewayConfig(upstream_url=url, default_pow=DEFAULT_EFFORT, subpuzzles=SUBPUZZLES,
                        tools={"confirm": {"free": True}, "echo": {"free": True}})
    gw = start_gateway(work, "gw-era-input", cfg)
    yield gw
    gw.proc.stop()
    up.stop()


def run_ts_elicit(url: str, calls: list[dict]) -> dict:
    require_file(NODE22, "run scripts/setup-test-deps")
    env = dict(os.environ, TURNPIKE_DEPS=str(DEPS.parent))
    r = subprocess.run([str(NODE22), str(SCRIPT), url, json.dumps(calls)],
                       capture_output=True, timeout=90, env=env, cwd=ROOT)
    assert r.returncode == 0, f"ts client exited {r.returncode}\n{r.stderr.decode(errors='replace')[-3000:]}"
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def answers(result: dict) -> list[dict]:
    assert result.get("isError") in (None, False), result
    return json.loads(result["content"][0]["text"])


def test_ts_sdk_answers_elicitation_and_sampling(modern_input: Gateway) -> None:
    out = run_ts_elicit(modern_input.url, [
        {"tool": "confirm", "arguments": {}},
        {"tool": "confirm", "arguments": {"rounds": 3, "ask": "both"}},
        {"tool": "echo", "arguments": {"text": "plain"}},
        {"tool": "confirm", "arguments": {}, "refuse": True},
    ])
    assert out["protocolVersion"] in ("2025-11-25", "2025-06-18")
    one, three, echo, refused = out["results"]

    a = answers(one)
    assert a == [{"round": 1, "key": "confirm",
                  "response": {"action": "accept", "content": {"ok": True, "note": "ts answer 1"}}}]

    a = answers(three)
    assert [(x["round"], x["key"]) for x in a] == [
        (1, "confirm"), (1, "sample"), (2, "confirm"), (2, "sample"), (3, "confirm"), (3, "sample")]
    samples = [x["response"] for x in a if x["key"] == "sample"]
    assert all(s["model"] == "ts-model" and s["content"]["text"].startswith("sampled ") for s in samples)
    assert all(x["response"]["content"]["ok"] is True for x in a if x["key"] == "confirm")

    assert echo["content"][0]["text"] == "plain"

    assert "the client answered elicitation/create with an error" in refused["error"], refused
    assert "the user closed the dialog" in refused["error"], refused

    methods = [x["method"] for x in out["asked"]]
    assert methods == ["elicitation/create"] + ["elicitation/create", "sampling/createMessage"] * 3 + [
        "elicitation/create"], methods
    assert out["asked"][0]["message"] == "round 1: confirm?"


def test_python_sdk_legacy_mode_elicitation(modern_input: Gateway) -> None:
    seen: list[str] = []

    async def elicit(context, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen.append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True, "note": f"py {len(seen)}"})

    async def main():
        async with Client(modern_input.url, mode="legacy", elicitation_callback=elicit) as c:
            r = await c.call_tool("confirm", {"rounds": 2})
            return c.protocol_version, r

    version, r = anyio.run(main)
    assert version == LEGACY
    assert r.is_error is False, r
    got = json.loads(r.content[0].text)
    assert [x["response"]["content"]["note"] for x in got] == ["py 1", "py 2"]
    assert seen == ["round 1: confirm?", "round 2: confirm?"]


def headers(sid: str | None = None) -> dict[str, str]:
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": LEGACY}
    if sid:
        h["Mcp-Session-Id"] = sid
    return h


def start_session(url: str, caps: dict, name: str = "raw") -> str:
    r = httpx.post(url, headers=headers(), timeout=30, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": caps, "clientInfo": {"name": name, "version": "0"}}})
    assert r.status_code == 200, r.text
    return r.headers["mcp-session-id"]


def call_confirm(url: str, sid: str, args: dict) -> list[dict]:
    r = httpx.post(url, headers=headers(sid), timeout=30, json={
        "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "confirm", "arguments": args}})
    assert r.status_code == 200, r.text
    return response_messages(r)


def test_without_the_capability_a_clear_error(modern_input: Gateway) -> None:
    # No capability at all: the answer stays JSON, one error naming what the server asked for.
    sid = start_session(modern_input.url, {})
    [m] = call_confirm(modern_input.url, sid, {})
    assert m["id"] == 5 and m["error"]["code"] == -31601, m
    assert "elicitation/create" in m["error"]["message"] and "did not declare" in m["error"]["message"]
    # Sampling declared, elicitation asked for: refused before anything is sent to the client.
    sid = start_session(modern_input.url, {"sampling": {}})
    msgs = call_confirm(modern_input.url, sid, {})
    assert [m.get("method") for m in msgs] == [None], msgs
    assert msgs[-1]["error"]["code"] == -31601
    assert "did not declare the elicitation capability" in msgs[-1]["error"]["message"]


def test_answers_are_bound_to_the_session(modern_input: Gateway) -> None:
    """A response carrying the gateway's request id from another session is not taken; the
    right session's is, and the call finishes with it."""
    url = modern_input.url
    sid = start_session(url, {"elicitation": {}})
    # (a sealed id is derived from the claims: another client name makes it another session)
    other = start_session(url, {"elicitation": {}}, "raw-other")
    assert other != sid

    async def main() -> list[dict]:
        async with httpx.AsyncClient(timeout=30) as h:
            body = {"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                    "params": {"name": "confirm", "arguments": {}}}
            async with h.stream("POST", url, headers=headers(sid), json=body) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                buf, msgs = "", []
                async for chunk in resp.aiter_text():
                    buf += chunk
                    while "\n\n" in buf:
                        ev, buf = buf.split("\n\n", 1)
                        for m in parse_sse(ev + "\n\n"):
                            msgs.append(m)
                            if m.get("method") == "elicitation/create":
                                gid = m["id"]
                                assert gid.startswith("turnpike-input-") and len(gid) > 40
                                answer = {"jsonrpc": "2.0", "id": gid,
                                          "result": {"action": "accept", "content": {"ok": False}}}
                                forged = dict(answer, result={"action": "accept", "content": {"ok": True}})
                                r = await h.post(url, headers=headers(other), json=forged)
                                assert r.status_code == 202
                                r = await h.post(url, headers=headers(sid), json=answer)
                                assert r.status_code == 202
                return msgs

    msgs = anyio.run(main)
    assert [m.get("method") for m in msgs] == ["elicitation/create", None], msgs
    final = msgs[-1]
    assert final["id"] == "c1"
    got = json.loads(final["result"]["content"][0]["text"])
    assert got[0]["response"]["content"] == {"ok": False}, "the other session's answer was not taken"
