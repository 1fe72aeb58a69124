"""`turnpike connect` falls back from a refused payment to the puzzle it was offered.

A real MCP client (the Python `mcp` SDK) launches `turnpike connect` over stdio with a wallet
configured (the dev Lightning backend's dev wallet, as the user's LND REST wallet). The gateway's
priced tools offer both proof-of-work and L402. Whenever paying is refused — the invoice over
`--max-pay` (a per-call price, or a balance bundle) or over a budget, or a wallet that will not
pay — the bridge solves the puzzle instead: the call answers, nothing is paid, and the spend log
shows the solve. With the default policy (the puzzle slower than `--solve-under`, so L402 comes
first) and with `--prefer l402`. When no rail is left (the puzzle over the CPU-time cap too), the
tool error gives both reasons and says what the invoice would have bought.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client, StdioServerParameters

from listening import start_fixture, start_gateway_config
from turnpike_e2e import TURNPIKE, toml_str, wait_until

DEV_KEY = "33" * 32
# Small enough to solve at once, large enough that `--solve-under 0` makes it "slow".
EFFORT = 4000
ABSURD = 10_000_000_000_000


@dataclass
class Dual:
    url: str
    data_dir: Path

    def wallet(self) -> dict:
        return json.loads((self.data_dir / "dev-wallet.json").read_text())

    def ledger(self, kind: str) -> int:
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM l402_ledger WHERE kind = ?", (kind,)).fetchone()[0]

    def flags(self, macaroon: str | None = None) -> tuple[list[str], dict[str, str]]:
        w = self.wallet()
        return (["--wallet", "lnd", "--wallet-url", w["url"], "--wallet-secret-env", "DEV_MACAROON"],
                {"DEV_MACAROON": macaroon or w["macaroon_hex"]})


@pytest.fixture(scope="module")
def dual(work: Path) -> Iterator[Dual]:
    """A gateway whose priced tools take proof-of-work or L402, in front of the fixture server."""
    up, up_url = start_fixture(work, "fallback-fixture", "--stateless", "--json")
    data_dir = work / "gw-fallback-data"
    (data_dir / "dev-wallet.json").unlink(missing_ok=True)  # only this gateway's wallet counts
    config = "\n".join([
        "[server]", 'listen = "127.0.0.1:0"', 'path = "/mcp"',
        f"data_dir = {toml_str(str(data_dir))}", "",
        "[upstream]", f"url = {toml_str(up_url)}", "",
        "[pow]", "subpuzzles = 4", "",
        "[pow.load]", "ceiling = 100000000000000", "",
        # 20 sat a call: over the default --max-pay of 10.
        "[tools.add]", f"pow = {EFFORT}", "l402 = { sat = 20 }",
        # 1 sat a call, sold as a 20-sat balance: the bundle is over --max-pay, not the call.
        "[tools.echo]", f"pow = {EFFORT}", 'l402 = { sat = 1, mode = "balance", bundle = 20 }',
        # A puzzle no one should solve, and an invoice over --max-pay.
        "[tools.slow]", f"pow = {ABSURD}", "l402 = { sat = 50 }",
        "[tools.whoami]", "free = true", "",
        "[l402]", 'store = "sqlite"', "",
        "[lightning]", 'backend = "dev"', f"key_hex = {toml_str(DEV_KEY)}",
        "[lightning.dev_wallet]", 'listen = "127.0.0.1:0"', "",
    ])
    gw, url = start_gateway_config(work, "gw-fallback", config)
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 10, "the dev wallet")
    yield Dual(url, data_dir)
    gw.stop()
    up.stop()


def bridge(url: str, state: Path, *flags: str, env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=str(TURNPIKE),
        args=["connect", url, "--state-dir", str(state), *flags],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn", **env},
    )


def call(params: StdioServerParameters, name: str, args: dict):
    """Lists the tools through the bridge, checks that `name` is priced in both rails, calls it."""
    out = []

    async def main() -> None:
        async with Client(params) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert name in tools, list(tools)
            meta = tools[name].meta or {}
            rails = {o["rail"] for o in meta["turnpike/price"]["offers"]}
            assert rails == {"pow", "l402"}, meta
            out.append(await c.call_tool(name, args))

    anyio.run(main)
    return out[0]


def text(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def spend_log(state: Path) -> list[tuple[str, str]]:
    p = state / "spend.jsonl"
    if not p.exists():
        return []
    return [(e["rail"], e["status"]) for e in map(json.loads, p.read_text().splitlines()) if e]


# (flags, why L402 is refused): every way paying can be refused, with L402 tried first.
REFUSALS = [
    pytest.param(["--prefer", "l402"], "over --max-pay", id="max-pay-prefer-l402"),
    pytest.param(["--solve-under", "0"], "over --max-pay", id="max-pay-default-order"),
    pytest.param(["--prefer", "l402", "--challenge-mode", "http"], "over --max-pay",
                 id="max-pay-http-402"),
    pytest.param(["--prefer", "l402", "--max-pay", "100", "--max-per-call", "100",
                  "--max-per-day", "5"], "over the daily budget", id="daily-budget"),
    pytest.param(["--solve-under", "0", "--max-pay", "100", "--max-per-call", "5"],
                 "over the per-call budget", id="per-call-budget"),
]


@pytest.mark.parametrize("flags,why", REFUSALS)
def test_refused_invoice_falls_back_to_the_puzzle(dual: Dual, tmp_path: Path, flags: list[str],
                                                  why: str) -> None:
    state = tmp_path / "state"
    wallet, env = dual.flags()
    payments = dual.ledger("payment")
    r = call(bridge(dual.url, state, *wallet, *flags, env=env), "add", {"a": 20, "b": 22})
    assert not r.is_error, f"{why}: {text(r)}"
    assert "42" in text(r)
    # The puzzle was solved and nothing was paid.
    assert spend_log(state) == [("pow", "solved")]
    assert dual.ledger("payment") == payments


def test_balance_bundle_over_max_pay_falls_back(dual: Dual, tmp_path: Path) -> None:
    state = tmp_path / "state"
    wallet, env = dual.flags()
    payments = dual.ledger("payment")
    r = call(bridge(dual.url, state, *wallet, "--prefer", "l402", env=env), "echo", {"text": "hi"})
    assert not r.is_error, text(r)
    assert "hi" in text(r)
    assert spend_log(state) == [("pow", "solved")]
    assert dual.ledger("payment") == payments
    # Nothing kept: no balance was bought.
    creds = state / "credentials.json"
    assert not creds.exists() or json.loads(creds.read_text())["l402"] == []


def test_wallet_failure_falls_back(dual: Dual, tmp_path: Path) -> None:
    state = tmp_path / "state"
    wallet, env = dual.flags(macaroon="00" * 32)  # a macaroon the wallet refuses
    payments = dual.ledger("payment")
    r = call(bridge(dual.url, state, *wallet, "--prefer", "l402", "--max-pay", "100",
                    "--max-per-call", "100", env=env),
             "add", {"a": 1, "b": 2})
    assert not r.is_error, text(r)
    assert "3" in text(r)
    # The failed payment is logged (it counts nothing), then the solve.
    assert spend_log(state) == [("l402", "failed"), ("pow", "solved")]
    assert dual.ledger("payment") == payments


def test_no_rail_left_gives_every_reason(dual: Dual, tmp_path: Path) -> None:
    state = tmp_path / "state"
    wallet, env = dual.flags()
    payments = dual.ledger("payment")
    # `slow`: a 50-sat invoice over --max-pay and a puzzle over the CPU-time cap.
    r = call(bridge(dual.url, state, *wallet, "--pow-max-secs", "5", env=env), "slow",
             {"seconds": 0})
    assert r.is_error
    msg = text(r)
    assert "could not get tools/call slow through" in msg, msg
    assert "L402: over budget" in msg and "50 sat for tools/call slow" in msg, msg
    assert "pays at most 10 sat" in msg and "nothing paid" in msg, msg
    assert "proof-of-work:" in msg and "CPU-time cap" in msg, msg
    # The balance bundle is named for what it is, not as the call's cost.
    r = call(bridge(dual.url, state, *wallet, "--prefer", "l402", "--pow-max-secs", "0", env=env),
             "echo", {"text": "hi"})
    assert r.is_error
    msg = text(r)
    assert "20 sat of prepaid credit" in msg and "tools/call echo and later calls" in msg, msg
    assert "costs" not in msg, msg
    assert "proof-of-work:" in msg, msg
    assert spend_log(state) == []
    assert dual.ledger("payment") == payments
