"""A local chain for the end-to-end tests that pay in a stablecoin (x402, MPP's `evm` method).

anvil on a port it binds itself, the EIP-3009 token of x402_TestUSD.sol deployed by
x402_peer.mjs with 1 TUSD minted to a fresh payer, and a fresh settling account with gas money
whose key is in a 0600 file (what `[x402] settle_key_file` reads).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from listening import wait_for_output
from turnpike_e2e import DEPS, NODE22, ROOT, Proc, require_file, toml_str

ANVIL = DEPS / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
PEER = ROOT / "tests" / "e2e" / "x402_peer.mjs"


def peer(*args: str) -> dict:
    out = subprocess.run([str(NODE22), str(PEER), *args], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "TURNPIKE_DEPS": str(DEPS.parent)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class LocalChain:
    proc: Proc
    url: str
    asset: str
    payer_key: str
    payer: str
    settle_key_file: Path
    pay_to: str

    def balance(self, who: str) -> int:
        return int(peer("balance", self.url, self.asset, who)["balance"])

    def x402_table(self) -> list[str]:
        """The gateway's `[x402]` table: this chain, the token, its EIP-712 domain, the payee,
        settled with the settling key."""
        return [
            "[x402]", 'network = "eip155:31337"', f"rpc_url = {toml_str(self.url)}",
            f"asset = {toml_str(self.asset)}", 'asset_name = "TestUSD"', 'asset_version = "1"',
            f"pay_to = {toml_str(self.pay_to)}", "max_timeout_secs = 120",
            f"settle_key_file = {toml_str(str(self.settle_key_file))}", "",
        ]

    def payer_key_file(self, directory: Path) -> Path:
        key = directory / "payer.key"
        key.write_text(self.payer_key)
        key.chmod(0o600)
        return key

    def stop(self) -> None:
        self.proc.stop()


def start_chain(work: Path, name: str) -> LocalChain:
    require_file(ANVIL, "run scripts/setup-test-deps")
    anvil = Proc(name, [str(ANVIL), "--host", "127.0.0.1", "--port", "0"], work / f"{name}.log")
    addr = wait_for_output(anvil, lambda t: (m := re.search(r"Listening on (\S+)", t)) and m.group(1),
                           "listening")
    url = f"http://{addr}"
    payer_key = "0x" + secrets.token_hex(32)
    payer = peer("address", payer_key)["address"]
    asset = peer("setup", url, payer)["asset"]
    # The gateway's settling account, with gas money.
    settle_key = "0x" + secrets.token_hex(32)
    settler = peer("address", settle_key)["address"]
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                              "params": [settler, "0x56bc75e2d63100000"]})
    assert "error" not in r.json(), r.text
    key_path = work / f"{name}-settle.key"
    key_path.write_text(settle_key)
    key_path.chmod(0o600)
    pay_to = "0x" + secrets.token_hex(20)
    return LocalChain(anvil, url, asset, payer_key, payer, key_path, pay_to)
