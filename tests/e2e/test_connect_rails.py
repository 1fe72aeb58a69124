"""`turnpike connect` choosing among proof-of-work, L402, MPP (Lightning and `evm`) and x402.

One gateway (`turnpike serve` in front of the fixture server) prices `add` in every rail at once: a
puzzle, an L402 invoice, MPP's Lightning and `evm` charges, and an x402 offer (and `echo` in every
rail but L402), with the dev Lightning backend (its dev wallet serves as the user's LND wallet) and
the EIP-3009 token of x402_TestUSD.sol on anvil (evm_chain.py; the gateway settles with its own
key). Each rail has its own price, so what moved tells which rail paid. The Python `mcp` SDK
launches `turnpike connect` over stdio with the wallet and an EVM key (the token allowed, its
EIP-712 domain given), once per setting, and makes one call. Which rail paid is read outside
connect where it can be: the token's balances on chain (payer and payee), the gateway's L402
ledger, and the gateway's `turnpike_calls_total` series (the rail that passed the call); and
connect's spend log.

- `--rails x402,…` signs x402: the x402 price moves on chain;
- `--rails mpp-evm,…` signs MPP `evm`: the MPP evm price moves on chain;
- `--rails l402,…` pays the L402 invoice; nothing moves on chain;
- `--rails mpp,…` pays MPP's Lightning charge: on `echo`, priced the same without L402, and on
  `add`, where L402 is offered too (`mpp` is MPP's Lightning charge alone; `l402` would take the
  L402 invoice);
- `--rails pow` solves;
- budgets: with `--budget-usd-per-day` under both dollar prices, `--rails x402,mpp-evm,l402,pow`
  pays the L402 invoice (`add`) and `--rails x402,mpp,pow` MPP's Lightning charge (`echo`), and
  nothing moves on chain; with `--max-pay` under the Lightning price too, the puzzle is solved
  and nothing is paid at all.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from evm_chain import LocalChain, start_chain
from listening import start_fixture, start_gateway_config
from turnpike_e2e import TURNPIKE, spend_log, toml_str, wait_until

EFFORT = 4000
L402_SAT = 2
MPP_SAT = 3
MPP_EVM_UNITS = 20_000  # $0.02 of the 6-decimal token
X402_UNITS = 10_000  # $0.01
UNDER_BOTH_USD = "0.005"
DEV_KEY = "44" * 32
ALL_RAILS = {"pow", "l402", "mpp", "x402"}


@dataclass
class Gate:
    chain: LocalChain
    url: str
    data_dir: Path
    admin: str
    admin_token: str

    def wallet(self) -> dict:
        return json.loads((self.data_dir / "dev-wallet.json").read_text())

    def l402_payments(self) -> int:
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM l402_ledger WHERE kind = 'payment'").fetchone()[0]

    def passed(self, tool: str) -> dict[str, int]:
        """`turnpike_calls_total` of `tools/call <tool>` that passed, by rail."""
        text = httpx.get(f"{self.admin}/metrics", timeout=10,
                         headers={"authorization": f"Bearer {self.admin_token}"}).text
        out: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith("turnpike_calls_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("tool") == tool and labels.get("outcome") == "passed":
                out[labels["rail"]] = out.get(labels["rail"], 0) + int(float(line.split()[-1]))
        return out

    def balances(self) -> tuple[int, int]:
        return self.chain.balance(self.chain.payer), self.chain.balance(self.chain.pay_to)


@pytest.fixture(scope="module")
def gate(work: Path) -> Iterator[Gate]:
    chain = start_chain(work, "rails-anvil")
    up, up_url = start_fixture(work, "rails-fixture", "--stateless", "--json")
    data_dir = work / "gw-rails-data"
    (data_dir / "dev-wallet.json").unlink(missing_ok=True)  # only this gateway's wallet counts
    token = secrets.token_hex(16)
    config = "\n".join([
        "[server]", 'listen = "127.0.0.1:0"', 'path = "/mcp"',
        f"data_dir = {toml_str(str(data_dir))}", "",
        "[upstream]", f"url = {toml_str(up_url)}", "",
        "[pow]", "subpuzzles = 4", "",
        "[tools.add]", f"pow = {EFFORT}", f"l402 = {{ sat = {L402_SAT} }}",
        f'mpp = {{ sat = {MPP_SAT}, evm = "{MPP_EVM_UNITS}" }}',
        f'x402 = {{ amount = "{X402_UNITS}" }}', "",
        # The same without L402: MPP's Lightning charge is the only Lightning offer.
        "[tools.echo]", f"pow = {EFFORT}",
        f'mpp = {{ sat = {MPP_SAT}, evm = "{MPP_EVM_UNITS}" }}',
        f'x402 = {{ amount = "{X402_UNITS}" }}', "",
        "[l402]", 'store = "sqlite"', "",
        "[mpp]", "evm = { decimals = 6 }", "",
        "[lightning]", 'backend = "dev"', f"key_hex = {toml_str(DEV_KEY)}",
        "[lightning.dev_wallet]", 'listen = "127.0.0.1:0"', "",
        "[admin]", 'listen = "127.0.0.1:0"', f"token = {toml_str(token)}", "",
        *chain.x402_table(),
    ])
    gw, url = start_gateway_config(work, "gw-rails", config)
    admin_port = gw.reported_port("admin")
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 10, "the dev wallet")
    yield Gate(chain, url, data_dir, f"http://127.0.0.1:{admin_port}", token)
    gw.stop()
    up.stop()
    chain.stop()


def bridge(g: Gate, state: Path, *flags: str) -> StdioServerParameters:
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = g.chain.payer_key_file(state.parent)
    w = g.wallet()
    return StdioServerParameters(
        command=str(TURNPIKE),
        args=["connect", g.url, "--state-dir", str(state),
              "--wallet", "lnd", "--wallet-url", w["url"], "--wallet-secret-env", "DEV_MACAROON",
              "--x402-key", str(key), "--x402-network", "eip155:31337",
              "--x402-asset", g.chain.asset, "--x402-asset-name", "TestUSD",
              "--x402-asset-version", "1", *flags],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn",
             "DEV_MACAROON": w["macaroon_hex"]},
    )


CALLS = {"add": ({"a": 20, "b": 22}, "42", ALL_RAILS),
         "echo": ({"text": "hi"}, "hi", ALL_RAILS - {"l402"})}


def call(params: StdioServerParameters, tool: str) -> str:
    """Lists the tools through the bridge, checks the rails `tool` is offered in, calls it."""
    args, _, rails = CALLS[tool]
    out: list[str] = []

    async def main() -> None:
        async with Client(params) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            offers = (tools[tool].meta or {})["turnpike/price"]["offers"]
            assert {o["rail"] for o in offers} == rails, offers
            r = await client.call_tool(tool, args)
            assert not r.is_error, r
            out.append("\n".join(getattr(b, "text", "") for b in r.content))

    anyio.run(main)
    return out[0]


@dataclass
class Moved:
    """What one call moved, read outside connect."""
    payer: int  # token units the payer lost on chain
    payee: int  # token units the payee gained on chain
    l402: int  # payments in the gateway's L402 ledger
    rails: dict[str, int]  # calls of `add` the gateway passed, by rail
    log: list[tuple[str, str]]  # connect's spend log: (rail, status)


def one_call(g: Gate, tmp_path: Path, *flags: str, tool: str = "add") -> Moved:
    state = tmp_path / "state"
    payer, payee = g.balances()
    l402 = g.l402_payments()
    passed = g.passed(tool)
    assert CALLS[tool][1] in call(bridge(g, state, *flags), tool)
    payer2, payee2 = g.balances()
    after = g.passed(tool)
    rails = {r: n - passed.get(r, 0) for r, n in after.items() if n != passed.get(r, 0)}
    return Moved(payer - payer2, payee2 - payee, g.l402_payments() - l402, rails,
                 [(e["rail"], e["status"]) for e in spend_log(state)])


def test_x402_first_signs_x402_and_the_token_moves(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "x402,mpp-evm,l402,pow")
    assert (m.payer, m.payee, m.l402) == (X402_UNITS, X402_UNITS, 0), m
    assert m.rails == {"x402": 1}, m
    assert m.log == [("x402", "signed")], m


def test_mpp_evm_first_signs_the_evm_method(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "mpp-evm,x402,l402,pow")
    assert (m.payer, m.payee, m.l402) == (MPP_EVM_UNITS, MPP_EVM_UNITS, 0), m
    assert m.rails == {"mpp": 1}, m
    assert m.log == [("mpp-evm", "signed")], m


def test_l402_first_pays_the_l402_invoice(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "l402,x402,mpp-evm,pow")
    assert (m.payer, m.payee, m.l402) == (0, 0, 1), m
    assert m.rails == {"l402": 1}, m
    assert m.log == [("l402", "paid")], m


def test_mpp_first_pays_the_mpp_lightning_charge(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "mpp,x402,pow")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"mpp": 1}, m
    assert m.log == [("mpp", "paid")], m


def test_pow_alone_solves(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "pow")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"pow": 1}, m
    assert m.log == [("pow", "solved")], m


def test_under_the_dollar_budget_lightning_pays(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "x402,mpp-evm,l402,pow",
                 "--budget-usd-per-day", UNDER_BOTH_USD)
    assert (m.payer, m.payee, m.l402) == (0, 0, 1), m
    assert m.rails == {"l402": 1}, m
    assert m.log == [("l402", "paid")], m


def test_under_every_budget_the_puzzle_is_solved(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "x402,mpp-evm,l402,pow",
                 "--budget-usd-per-day", UNDER_BOTH_USD, "--max-pay", "1")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"pow": 1}, m
    assert m.log == [("pow", "solved")], m


# `echo`: the same prices without L402, so MPP's Lightning charge is the Lightning offer.


def test_mpp_first_pays_the_mpp_lightning_charge_when_alone(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "mpp,x402,pow", tool="echo")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"mpp": 1}, m
    assert m.log == [("mpp", "paid")], m


def test_under_the_dollar_budget_mpp_lightning_pays(gate: Gate, tmp_path: Path) -> None:
    m = one_call(gate, tmp_path, "--rails", "x402,mpp,pow", "--budget-usd-per-day",
                 UNDER_BOTH_USD, tool="echo")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"mpp": 1}, m
    assert m.log == [("mpp", "paid")], m


def test_under_the_dollar_budget_and_max_pay_mpp_falls_to_the_puzzle(gate: Gate,
                                                                     tmp_path: Path) -> None:
    # MPP's 3 sat are over --max-pay 2.
    m = one_call(gate, tmp_path, "--rails", "x402,mpp,pow", "--budget-usd-per-day",
                 UNDER_BOTH_USD, "--max-pay", "2", tool="echo")
    assert (m.payer, m.payee, m.l402) == (0, 0, 0), m
    assert m.rails == {"pow": 1}, m
    assert m.log == [("pow", "solved")], m
