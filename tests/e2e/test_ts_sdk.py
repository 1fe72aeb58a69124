"""The TypeScript SDK (@modelcontextprotocol/sdk) as the client, through the gateway: the other
MCP client most agents are built on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from turnpike_e2e import DEPS, NODE22, ROOT, TURNPIKE, Gateway

SCRIPT = Path(__file__).resolve().parent / "ts_client.mjs"


def run_ts(url: str, free: tuple[str, dict], priced: tuple[str, dict]) -> dict:
    env = dict(os.environ, TURNPIKE_DEPS=str(DEPS.parent), TURNPIKE_BIN=str(TURNPIKE))
    r = subprocess.run(
        [str(NODE22), str(SCRIPT), url, free[0], json.dumps(free[1]), priced[0], json.dumps(priced[1])],
        capture_output=True, timeout=90, env=env, cwd=ROOT,
    )
    assert r.returncode == 0, f"ts client exited {r.returncode}\n{r.stderr.decode(errors='replace')[-3000:]}"
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def check_flow(out: dict, free_text: str, paid_text: str) -> None:
    assert out["free"].get("isError") in (None, False), out["free"]
    assert out["free"]["content"][0]["text"] == free_text

    ch = out["challenge"]
    assert ch["isError"] is True
    assert ch["structuredContent"]["turnpike"]["challenges"][0]["rail"] == "pow"

    paid = out["paid"]
    assert paid.get("isError") in (None, False), paid
    assert paid["content"][0]["text"] == paid_text

    replay = out["replay"]
    assert replay["isError"] is True
    reasons = [r["reason"] for r in replay["structuredContent"]["turnpike"]["refusals"]]
    assert any("already used" in r for r in reasons), replay


def test_ts_sdk_through_the_gateway(gw: Gateway) -> None:
    out = run_ts(gw.url, ("echo", {"message": "ts"}), ("get-sum", {"a": 20, "b": 22}))
    assert out["serverVersion"]["name"] == "mcp-servers/everything"
    assert out["prices"]["echo"] == {"free": True, "offers": []}
    assert out["prices"]["get-sum"]["free"] is False
    check_flow(out, "Echo: ts", "The sum of 20 and 22 is 42.")


def test_ts_sdk_in_front_of_the_fixture(gw_fixture: tuple[Gateway, str]) -> None:
    gw, _ = gw_fixture
    out = run_ts(gw.url, ("echo", {"text": "ts"}), ("add", {"a": 40, "b": 2}))
    assert out["serverVersion"]["name"] == "turnpike-fixture"
    check_flow(out, "ts", "42")
