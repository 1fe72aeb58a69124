"""`turnpike connect` pays x402 for an MCP host, on a real local chain.

The Python `mcp` SDK launches `turnpike connect` over stdio with an EVM key (a 0600 file) and the
test token allowed. The gateway (`turnpike serve`, in front of the fixture server) prices `add` in
proof-of-work or x402 and settles with its own key on anvil, where the EIP-3009 token of
x402_TestUSD.sol is deployed (x402_peer.mjs; the chain is evm_chain.py's, shared with
test_connect_rails.py). With `--rails x402,pow` the bridge signs the
payment and the token moves on chain; with a daily dollar budget under the price it refuses, says
so only in its log, and solves the puzzle instead: nothing moves.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import anyio
import pytest
from mcp import Client, StdioServerParameters

from evm_chain import start_chain
from listening import start_fixture, start_gateway_config
from turnpike_e2e import TURNPIKE, spend_log, toml_str

PRICE = 10_000  # atomic units of a 6-decimal token: $0.01
EFFORT = 4000


@dataclass
class Chain:
    url: str
    asset: str
    payer_key: str
    payer: str
    pay_to: str
    gw_url: str
    balance: Callable[[str], int]  # the token's balance of an address, on chain


@pytest.fixture(scope="module")
def chain(work: Path) -> Iterator[Chain]:
    local = start_chain(work, "x402-anvil")
    up, up_url = start_fixture(work, "x402-connect-fixture", "--stateless", "--json")
    data_dir = work / "gw-x402-connect-data"
    config = "\n".join([
        "[server]", 'listen = "127.0.0.1:0"', 'path = "/mcp"',
        f"data_dir = {toml_str(str(data_dir))}", "",
        "[upstream]", f"url = {toml_str(up_url)}", "",
        "[pow]", "subpuzzles = 4", "",
        "[tools.add]", f"pow = {EFFORT}", f'x402 = {{ amount = "{PRICE}" }}', "",
        *local.x402_table(),
    ])
    gw, gw_url = start_gateway_config(work, "gw-x402-connect", config)
    yield Chain(local.url, local.asset, local.payer_key, local.payer, local.pay_to, gw_url,
                local.balance)
    gw.stop()
    up.stop()
    local.stop()


def bridge(c: Chain, state: Path, *flags: str) -> StdioServerParameters:
    key = state.parent / "payer.key"
    key.write_text(c.payer_key)
    key.chmod(0o600)
    return StdioServerParameters(
        command=str(TURNPIKE),
        args=["connect", c.gw_url, "--state-dir", str(state), "--x402-key", str(key),
              "--x402-network", "eip155:31337", "--x402-asset", c.asset, *flags],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"},
    )


def call_add(params: StdioServerParameters) -> str:
    out: list[str] = []

    async def main() -> None:
        async with Client(params) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            rails = {o["rail"] for o in (tools["add"].meta or {})["turnpike/price"]["offers"]}
            assert rails == {"pow", "x402"}, rails
            r = await client.call_tool("add", {"a": 20, "b": 22})
            assert not r.is_error, r
            out.append("\n".join(getattr(b, "text", "") for b in r.content))

    anyio.run(main)
    return out[0]


def test_connect_pays_x402_and_the_token_moves(chain: Chain, tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = chain.balance(chain.payer)
    to_before = chain.balance(chain.pay_to)
    assert "42" in call_add(bridge(chain, state, "--rails", "x402,pow"))
    assert chain.balance(chain.payer) == before - PRICE
    assert chain.balance(chain.pay_to) == to_before + PRICE
    log = spend_log(state)
    assert [(e["rail"], e["status"]) for e in log] == [("x402", "signed")], log
    assert log[0]["pay_to"].lower() == chain.pay_to.lower()
    assert log[0]["usd_micro"] == PRICE
    spent = subprocess.run([str(TURNPIKE), "connect", "--spent", "--state-dir", str(state)],
                           capture_output=True, text=True, check=True).stdout
    assert "$0.01 to 0x" in spent and "x402: $0.01 in the last 24 h" in spent, spent


def test_over_the_dollar_budget_the_puzzle_is_solved(chain: Chain, tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = chain.balance(chain.payer)
    assert "42" in call_add(bridge(chain, state, "--rails", "x402,pow",
                                   "--budget-usd-per-day", "0.005"))
    assert chain.balance(chain.payer) == before
    assert [(e["rail"], e["status"]) for e in spend_log(state)] == [("pow", "solved")]
