"""Access policy end to end: `turnpike serve` with `[[policy]]` rules in front of the fixture,
a real authorization server (oidc-provider, as in test_oauth.py), and the Python `mcp` SDK and
the TypeScript SDK (@modelcontextprotocol/sdk) as two different callers listing tools and
seeing different lists.

The anonymous caller sees `echo` alone and gets the unknown-tool answer for a hidden tool; the
signed-in caller (the SDK's client-credentials provider, whose token is sent on every request
once it has one) sees every tool. The upstream speaks either era.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from test_oauth import CLIENT_SECRET, MemoryStorage, _start_provider
from turnpike_e2e import (
    DEPS,
    FIXTURE,
    NODE22,
    ROOT,
    TURNPIKE,
    Proc,
    PortTaken,
    on_free_port,
    require_file,
    start_fixture_http,
    toml_str,
)

RULES = """
[[policy]]
name = "members"
when = "identity.kind == 'oauth' && 'mcp:tools' in identity.scopes"
action = "allow"

[[policy]]
name = "echo-for-the-rest"
when = "call.method == 'tools/call' && call.tool != 'echo'"
action = "deny"
reason = "sign in for this tool"
"""


@dataclass
class PolicySetup:
    gateway: Proc
    port: int
    issuer: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


ERAS = {
    "2025": ["--era", "2025"],
    "2026-07-28": ["--era", "2026-07-28"],
}


@pytest.fixture(scope="module", params=sorted(ERAS))
def policy(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySetup]:
    require_file(TURNPIKE, "build it: cargo build -p turnpike")
    require_file(FIXTURE, "build it: cargo build -p turnpike-fixture")
    era = request.param
    work = tmp_path_factory.mktemp(f"policy-{era}")
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "client-1", "use": "sig"})
    fixture, up_port = start_fixture_http(work, f"fixture-policy-{era}", *ERAS[era])

    def start(port: int) -> tuple[Proc, subprocess.Popen, str]:
        resource = f"http://127.0.0.1:{port}/mcp"
        provider, issuer = _start_provider(work, resource, jwk)
        config = work / "gw-policy.toml"
        config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
path = "/mcp"
data_dir = {toml_str(str(work / "data"))}

[upstream]
url = "http://127.0.0.1:{up_port}/mcp"

[tools.add]
oauth = {{ scopes = ["mcp:tools"] }}
[tools.default]
free = true

[oauth]
issuer = {toml_str(issuer)}
scopes_supported = ["mcp:tools"]
{RULES}
""")
        check = subprocess.run([str(TURNPIKE), "check", "--config", str(config)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        gw = Proc("gw-policy", [str(TURNPIKE), "serve", "--config", str(config)],
                  work / "gw-policy.log")
        try:
            assert gw.reported_port("gateway") == port
        except PortTaken:
            gw.stop()
            provider.kill()
            provider.wait(timeout=5)
            raise
        return gw, provider, issuer

    gw, provider, issuer = on_free_port(start)
    try:
        yield PolicySetup(gw, int(gw.reported_port("gateway")), issuer)
    finally:
        gw.stop()
        fixture.stop()
        provider.kill()
        provider.wait(timeout=5)


def _client(url: str, auth: httpx2.Auth | None = None) -> Client:
    http = httpx2.AsyncClient(auth=auth, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


def test_two_callers_see_two_lists(policy: PolicySetup) -> None:
    async def main() -> None:
        async with _client(policy.url) as anon:
            names = sorted(t.name for t in (await anon.list_tools()).tools)
            assert names == ["echo"], names
            assert (await anon.call_tool("echo", {"text": "hi"})).content[0].text == "hi"
            # A hidden tool: the unknown-tool answer, whatever the SDK makes of it.
            with pytest.raises(Exception, match="unknown tool"):
                await anon.call_tool("slow", {})

        auth = ClientCredentialsOAuthProvider(
            server_url=policy.url, storage=MemoryStorage(), client_id="agent-secret",
            client_secret=CLIENT_SECRET, scope="mcp:tools", issuer=policy.issuer)
        async with _client(policy.url, auth) as member:
            # `add` needs a token: the SDK signs in on its 401, then sends the token every time.
            assert (await member.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"
            names = sorted(t.name for t in (await member.list_tools()).tools)
            assert {"add", "echo", "slow", "whoami"} <= set(names), names
            assert len(names) > 1

    anyio.run(main)


TS_LISTER = Path(__file__).resolve().parent / "ts_lister.mjs"


def _ts_list(url: str, hidden: str, token: str | None = None) -> dict:
    env = dict(os.environ, TURNPIKE_DEPS=str(DEPS.parent))
    r = subprocess.run([str(NODE22), str(TS_LISTER), url, hidden, *([token] if token else [])],
                       capture_output=True, timeout=90, env=env, cwd=ROOT)
    assert r.returncode == 0, f"ts lister exited {r.returncode}\n{r.stderr.decode(errors='replace')[-3000:]}"
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_ts_sdk_two_callers_see_two_lists(policy: PolicySetup) -> None:
    """The TypeScript SDK (it speaks the 2025 era; the upstream either era) as the anonymous
    caller and as a signed-in one: two lists."""
    require_file(NODE22, "install the e2e npm dependencies: scripts/setup-test-deps")
    anon = _ts_list(policy.url, "whoami")
    assert anon["names"] == ["echo"], anon
    assert "unknown tool" in anon["hidden"].get("error", ""), anon

    token_endpoint = httpx.get(f"{policy.issuer}/.well-known/openid-configuration").json()[
        "token_endpoint"]
    r = httpx.post(token_endpoint, auth=("agent-secret", CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "resource": policy.url,
                         "scope": "mcp:tools"})
    assert r.status_code == 200, r.text
    member = _ts_list(policy.url, "whoami", r.json()["access_token"])
    assert {"add", "echo", "slow", "whoami"} <= set(member["names"]), member
    assert "error" not in member["hidden"], member
    assert member["hidden"]["result"].get("isError") in (None, False), member
