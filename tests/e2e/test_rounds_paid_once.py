"""A multi-round (input_required) call is paid once.

The fixture in modern-only mode has a `confirm` tool that answers `input_required` for a number
of rounds. Priced with proof of work here: the first request pays; each retry carrying the
`requestState` the previous round answered passes without a new puzzle, once, and only for the
same tool and arguments (crates/turnpike-gateway/src/continuation.rs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import SUBPUZZLES
from test_eras import start_fixture
from turnpike_e2e import (
    ACCEPT,
    Gateway,
    GatewayConfig,
    authorization,
    pow_challenges,
    py_solve,
    response_messages,
    start_gateway,
)

MODERN = "2026-07-28"
EFFORT = 200
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}


@pytest.fixture(scope="module")
def priced_rounds(work: Path) -> Iterator[Gateway]:
    up, url = start_fixture(work, "fixture-rounds", MODERN)
    cfg = GatewayConfig(upstream_url=url, subpuzzles=SUBPUZZLES, challenge_mode="http",
                        tools={"confirm": {"pow": EFFORT}})
    gw = start_gateway(work, "gw-rounds", cfg)
    yield gw
    gw.proc.stop()
    up.stop()


def confirm(gw: Gateway, args: dict, state: str | None = None, auth: str | None = None,
            rid: int = 1) -> httpx.Response:
    params: dict = {"name": "confirm", "arguments": args, "_meta": META}
    if state is not None:
        params["requestState"] = state
        params["inputResponses"] = {"confirm": {"action": "accept", "content": {"ok": True}}}
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
         "Mcp-Method": "tools/call", "Mcp-Name": "confirm"}
    if auth:
        h["Authorization"] = auth
    return httpx.post(gw.url, headers=h, timeout=30,
                      json={"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


def result(r: httpx.Response) -> dict:
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:300]}"
    [m] = [m for m in response_messages(r) if "id" in m and "method" not in m]
    assert "result" in m, m
    return m["result"]


def paid_first_round(gw: Gateway, args: dict) -> dict:
    r = confirm(gw, args)
    assert r.status_code == 402, r.text[:300]
    [challenge] = pow_challenges(r)
    token = challenge.split('challenge="', 1)[1].split('"', 1)[0]
    return result(confirm(gw, args, auth=authorization(token, py_solve(token))))


def test_the_next_rounds_are_not_priced_again(priced_rounds: Gateway) -> None:
    gw = priced_rounds
    args = {"rounds": 3}
    first = paid_first_round(gw, args)
    assert first["resultType"] == "input_required", first
    s1 = first["requestState"]

    # Round two: no credential, the state the paid round answered.
    second = result(confirm(gw, args, s1, rid=2))
    assert second["resultType"] == "input_required", second
    s2 = second["requestState"]
    # That state is used up: presented again, the call is priced as a new one.
    assert confirm(gw, args, s1, rid=3).status_code == 402
    # A state is good for its own tool and arguments only.
    assert confirm(gw, {"rounds": 4}, s2, rid=4).status_code == 402
    # Round three, and the answer.
    third = result(confirm(gw, args, s2, rid=5))
    assert third["resultType"] == "input_required", third
    done = result(confirm(gw, args, third["requestState"], rid=6))
    assert done["resultType"] == "complete", done
    assert [a["round"] for a in done["structuredContent"]["answers"]] == [1, 2, 3]


def test_a_state_the_gate_never_saw_is_priced(priced_rounds: Gateway) -> None:
    # A made-up requestState (the fixture's format, but never answered to a paid call).
    forged = '{"round": 1, "answers": []}'
    r = confirm(priced_rounds, {"rounds": 1}, forged, rid=7)
    assert r.status_code == 402, r.text[:300]
