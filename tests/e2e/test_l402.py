"""L402 end to end: `turnpike serve` with the dev Lightning backend in front of the project's
fixture server, paid by real clients.

- `l402-requests` (PyPI), an auto-paying L402 client, with the dev wallet as its LND REST node:
  per-call prices are paid on every call, a balance is bought once;
- the Python `mcp` SDK gets the in-band challenge, the test pays the invoice through the dev
  wallet's LND REST payment call, and the SDK retries with the credential in `_meta`;
- a balance survives a gateway restart (SQLite store).

The dev backend is NOT for production: its wallet "pays" any invoice the gateway minted.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import pytest
from mcp import Client

from turnpike_e2e import (
    ACCEPT,
    FIXTURE,
    TURNPIKE,
    Proc,
    require_file,
    start_fixture_http,
    toml_str,
    wait_until,
)

# Prices: `add` costs 1 sat per call or a small proof-of-work (dual rail); `echo` is billed from a
# balance: 1000 msat a call, 3000 msat bought per invoice; `whoami` is free.
ADD_MSAT = 1000
ECHO_MSAT = 1000
ECHO_BUNDLE = 3000
DEV_KEY = "11" * 32


@dataclass
class L402Gateway:
    proc: Proc
    port: int
    config_path: Path
    data_dir: Path
    name: str
    work: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def wallet(self) -> dict:
        return json.loads((self.data_dir / "dev-wallet.json").read_text())

    def payments(self) -> int:
        """Payments the gateway recorded (ledger rows of kind `payment`)."""
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM l402_ledger WHERE kind = 'payment'").fetchone()[0]

    def balance(self) -> list[tuple[int, int]]:
        with sqlite3.connect(self.data_dir / "l402.sqlite") as db:
            return db.execute("SELECT credit_msat, spent_msat FROM l402_balances").fetchall()

    def stop(self) -> None:
        self.proc.stop()

    def restart(self) -> None:
        self.proc.stop()
        self.proc = _spawn(self.name, self.config_path, self.work)
        # A port of its own again (the config says 0): tokens and balances are not bound to one.
        self.port = self.proc.reported_port("gateway")
        wait_until(lambda: (self.data_dir / "dev-wallet.json").exists(), 10, "dev wallet")


def _spawn(name: str, config_path: Path, work: Path) -> Proc:
    return Proc(name, [str(TURNPIKE), "serve", "--config", str(config_path)], work / f"{name}.log")


def l402_config(port: int, data_dir: Path, upstream_url: str) -> str:
    return "\n".join([
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        'path = "/mcp"',
        f"data_dir = {toml_str(str(data_dir))}",
        "",
        "[upstream]",
        f"url = {toml_str(upstream_url)}",
        "",
        "[pow]",
        "subpuzzles = 2",
        "",
        "[tools.add]",
        "pow = 4000",
        f"l402 = {{ msat = {ADD_MSAT} }}",
        "[tools.echo]",
        f'l402 = {{ msat = {ECHO_MSAT}, mode = "balance", bundle = {ECHO_BUNDLE} }}',
        "[tools.whoami]",
        "free = true",
        "",
        "[l402]",
        'store = "sqlite"',
        "",
        "[lightning]",
        'backend = "dev"',
        f"key_hex = {toml_str(DEV_KEY)}",
        "[lightning.dev_wallet]",
        'listen = "127.0.0.1:0"',
        # l402-requests 0.9 reads SendPaymentV2's preimage as base64 (LND writes hex).
        "preimage_base64 = true",
        "",
    ])


@pytest.fixture()
def l402_gw(work: Path, request: pytest.FixtureRequest) -> Iterator[L402Gateway]:
    """A fresh gateway (its own data directory) with the dev backend, in front of the fixture
    server in stateless JSON mode."""
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    name = f"l402-{request.node.name}"
    up, up_port = start_fixture_http(work, f"{name}-fixture", "--stateless", "--json")
    data_dir = work / f"{name}-data"
    config_path = work / f"{name}.toml"
    config_path.write_text(l402_config(0, data_dir, f"http://127.0.0.1:{up_port}/mcp"))
    proc = _spawn(name, config_path, work)
    port = proc.reported_port("gateway")
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 10, "dev wallet")
    gw = L402Gateway(proc, port, config_path, data_dir, name, work)
    yield gw
    gw.stop()
    up.stop()


def tool_call(rid: int, name: str, args: dict, meta: dict | None = None) -> dict:
    params: dict = {"name": name, "arguments": args}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def dev_pay(gw: L402Gateway, invoice: str) -> str:
    """Pays an invoice through the dev wallet's LND REST SendPaymentSync; the preimage as hex."""
    w = gw.wallet()
    r = httpx.post(f"{w['url']}/v1/channels/transactions", json={"payment_request": invoice},
                   headers={"Grpc-Metadata-macaroon": w["macaroon_hex"]}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["payment_error"] == ""
    return base64.b64decode(body["payment_preimage"]).hex()


def l402_client(gw: L402Gateway):
    from l402_requests import L402Client
    from l402_requests.wallets.lnd import LndWallet

    w = gw.wallet()
    return L402Client(wallet=LndWallet(host=w["url"], macaroon_hex=w["macaroon_hex"]))


HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}


def result_text(r: httpx.Response) -> str:
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    body = r.json()
    assert "result" in body, body
    assert body["result"].get("isError") is not True, body
    return body["result"]["content"][0]["text"]


def test_l402_requests_per_call_pays_every_time(l402_gw: L402Gateway) -> None:
    client = l402_client(l402_gw)
    r1 = client.post(l402_gw.url, json=tool_call(1, "add", {"a": 2, "b": 3}), headers=HEADERS)
    assert "5" in result_text(r1)
    assert l402_gw.payments() == 1
    r2 = client.post(l402_gw.url, json=tool_call(2, "add", {"a": 4, "b": 4}), headers=HEADERS)
    assert "8" in result_text(r2)
    assert l402_gw.payments() == 2, "per call: the second call paid again"


def test_l402_requests_balance_pays_once(l402_gw: L402Gateway) -> None:
    client = l402_client(l402_gw)
    for i in range(3):
        r = client.post(l402_gw.url, json=tool_call(i, "echo", {"text": f"hi {i}"}), headers=HEADERS)
        assert result_text(r) == f"hi {i}"
    assert l402_gw.payments() == 1, "three calls from one 3000-msat balance"
    assert l402_gw.balance() == [(ECHO_BUNDLE, 3 * ECHO_MSAT)]
    # The fourth call tops up: a new invoice, paid automatically.
    r = client.post(l402_gw.url, json=tool_call(9, "echo", {"text": "more"}), headers=HEADERS)
    assert result_text(r) == "more"
    assert l402_gw.payments() == 2


def test_dual_rail_challenge_l402_first(l402_gw: L402Gateway) -> None:
    r = httpx.post(l402_gw.url, json=tool_call(1, "add", {"a": 1, "b": 1}), headers=HEADERS)
    assert r.status_code == 402
    lines = r.headers.get_list("www-authenticate")
    assert len(lines) == 2 and lines[0].startswith('L402 macaroon="') and lines[1].startswith("PoW ")
    assert '", invoice="lnbcrt' in lines[0]
    rails = [c["rail"] for c in r.json()["error"]["data"]["challenges"]]
    assert rails == ["l402", "pow"]


def test_mcp_sdk_in_band_pay_and_retry_in_meta(l402_gw: L402Gateway) -> None:
    async def main():
        async with Client(l402_gw.url) as c:
            first = await c.call_tool("add", {"a": 20, "b": 22})
            assert first.is_error is True
            tp = first.structured_content["turnpike"]
            l402 = next(ch for ch in tp["challenges"] if ch["rail"] == "l402")
            assert any(ch["rail"] == "pow" for ch in tp["challenges"]), "both ways offered"
            text = first.content[0].text
            assert "Lightning invoice" in text and "turnpike/pow" in text, text
            preimage = await anyio.to_thread.run_sync(dev_pay, l402_gw, l402["invoice"])
            meta = {"turnpike/l402": {"macaroon": l402["macaroon"], "preimage": preimage}}
            paid = await c.call_tool("add", {"a": 20, "b": 22}, meta=meta)
            replay = await c.call_tool("add", {"a": 20, "b": 22}, meta=meta)
            return paid, replay

    paid, replay = anyio.run(main)
    assert paid.is_error is False, paid
    assert "42" in paid.content[0].text
    assert replay.is_error is True, "a per-call token pays once"
    reasons = [r["reason"] for r in replay.structured_content["turnpike"]["refusals"]]
    assert any("already used" in r for r in reasons), reasons


def test_balance_survives_a_restart(l402_gw: L402Gateway) -> None:
    r = httpx.post(l402_gw.url, json=tool_call(1, "echo", {"text": "a"}), headers=HEADERS)
    assert r.status_code == 402
    line = r.headers.get_list("www-authenticate")[0]
    mac = line.split('macaroon="', 1)[1].split('"', 1)[0]
    inv = line.split('invoice="', 1)[1].split('"', 1)[0]
    auth = {"Authorization": f"L402 {mac}:{dev_pay(l402_gw, inv)}", **HEADERS}
    assert result_text(httpx.post(l402_gw.url, json=tool_call(2, "echo", {"text": "before"}),
                                  headers=auth)) == "before"
    assert l402_gw.balance() == [(ECHO_BUNDLE, ECHO_MSAT)]

    l402_gw.restart()

    assert result_text(httpx.post(l402_gw.url, json=tool_call(3, "echo", {"text": "after"}),
                                  headers=auth)) == "after"
    assert l402_gw.balance() == [(ECHO_BUNDLE, 2 * ECHO_MSAT)]
    assert result_text(httpx.post(l402_gw.url, json=tool_call(4, "echo", {"text": "last"}),
                                  headers=auth)) == "last"
    r = httpx.post(l402_gw.url, json=tool_call(5, "echo", {"text": "none left"}), headers=auth)
    assert r.status_code == 402, "balance used up: a top-up challenge"
    assert r.headers.get_list("www-authenticate")[0].startswith("L402 ")
