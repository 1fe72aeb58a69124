"""OAuth end to end: `turnpike serve` in front of the project's fixture server, trusting a real
authorization server (oidc-provider from npm, run on loopback with the configuration
crates/turnpike-oauth/tests/oidc/provider.mjs gives it), and the Python `mcp` SDK as the client.

The SDK's own client-credentials providers do the whole MCP authorization flow unaided: the call
gets HTTP 401 with `WWW-Authenticate: Bearer resource_metadata=…`, the SDK reads the RFC 9728
metadata from the gateway, discovers the authorization server, asks for a token for this resource
(RFC 8707 `resource`) and retries. Both headless ways are covered:

- `ClientCredentialsOAuthProvider` (client id + secret, client_secret_basic);
- `PrivateKeyJWTOAuthProvider` with `SignedJWTParameters` (a signed JWT assertion, RFC 7523,
  ES256).

The upstream (fixture `whoami`) shows what reached it: never the token, and the gateway's signed
`Turnpike-Identity` statement.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from mcp import Client
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from turnpike_e2e import (
    ACCEPT,
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

PROVIDER_JS = ROOT / "crates" / "turnpike-oauth" / "tests" / "oidc" / "provider.mjs"
OIDC_PROVIDER = ROOT / ".deps" / "node_modules" / "oidc-provider"
CLIENT_SECRET = "agent-secret-value-0123456789"
IDENTITY_SECRET = "42" * 32
SCOPES = "mcp:tools mcp:admin"


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class OAuthSetup:
    gateway: Proc
    port: int
    issuer: str
    client_key_pem: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def _start_provider(work: Path, resource: str, client_jwk: dict) -> tuple[subprocess.Popen, str]:
    require_file(NODE22, "run scripts/setup-test-deps")
    require_file(OIDC_PROVIDER / "lib" / "index.js", "run scripts/setup-test-deps")
    env = {
        "PATH": "/usr/bin:/bin",
        "TP_OIDC_PROVIDER": str(OIDC_PROVIDER),
        "TP_ISSUER_PATH": "",
        # No keys of the test's own: the provider signs with the RSA key it makes itself.
        "TP_AS_KEYS": "[]",
        "TP_CLIENT_JWKS": json.dumps({"keys": [client_jwk]}),
        "TP_CLIENT_SECRET": CLIENT_SECRET,
        "TP_RS_SECRET": "resource-server-secret-0123456789",
        "TP_RESOURCES": json.dumps({resource: {"alg": "RS256", "scope": SCOPES}}),
    }
    log = open(work / "oidc-provider.log", "wb")
    p = subprocess.Popen([str(NODE22), str(PROVIDER_JS)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"oidc-provider did not start: {(work / 'oidc-provider.log').read_text()}")
    return p, json.loads(line)["issuer"]


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthSetup]:
    require_file(TURNPIKE, "build it: cargo build -p turnpike")
    require_file(FIXTURE, "build it: cargo build -p turnpike-fixture")
    work = tmp_path_factory.mktemp("oauth")
    # The agent-jwt client's key (private_key_jwt, ES256).
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "client-1", "use": "sig"})

    fixture, up_port = start_fixture_http(work, "fixture-oauth", "--stateless", "--json")

    # The resource URL (the gateway's address) goes into the provider's configuration before the
    # gateway starts: a port picked here, and everything started again on another one should the
    # gateway find it taken.
    def start(port: int) -> tuple[Proc, subprocess.Popen, str]:
        resource = f"http://127.0.0.1:{port}/mcp"
        provider, issuer = _start_provider(work, resource, jwk)
        config = work / "gw-oauth.toml"
        config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
path = "/mcp"
data_dir = {toml_str(str(work / "data"))}

[upstream]
url = "http://127.0.0.1:{up_port}/mcp"

[tools.add]
oauth = {{ scopes = ["mcp:tools"] }}
[tools.whoami]
oauth = true
[tools.echo]
oauth = true
pow = 2000
[tools.slow]
free = true

[oauth]
issuer = {toml_str(issuer)}
scopes_supported = ["mcp:tools"]
resource_name = "turnpike e2e"
forward_identity = "signed"
identity_secret = "{IDENTITY_SECRET}"
""")
        check = subprocess.run([str(TURNPIKE), "check", "--config", str(config)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert 'add oauth scopes "mcp:tools"' in check.stdout, check.stdout
        gw = Proc("gw-oauth", [str(TURNPIKE), "serve", "--config", str(config)], work / "gw-oauth.log")
        try:
            assert gw.reported_port("gateway") == port
        except PortTaken:
            gw.stop()
            provider.kill()
            provider.wait(timeout=5)
            raise
        return gw, provider, issuer

    gw, provider, issuer = on_free_port(start)
    port = int(gw.reported_port("gateway"))
    try:
        yield OAuthSetup(gw, port, issuer, pem)
    finally:
        gw.stop()
        fixture.stop()
        provider.kill()
        provider.wait(timeout=5)


def _client(auth: httpx2.Auth, url: str) -> Client:
    http = httpx2.AsyncClient(auth=auth, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


def _text(result) -> str:
    return result.content[0].text


def _check_identity(value: str, resource: str, issuer: str, client_id: str) -> None:
    """Checks a Turnpike-Identity header as an upstream would (see docs/OAUTH.md)."""
    if isinstance(value, list):  # whoami lists every value of a header
        assert len(value) == 1, value
        value = value[0]
    signed, tag = value.rsplit(".", 1)
    assert signed.startswith("v1.")
    want = hmac.new(bytes.fromhex(IDENTITY_SECRET), signed.encode(), hashlib.sha256).digest()
    got = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4))
    assert hmac.compare_digest(want, got)
    payload = signed[3:]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == issuer
    assert claims["sub"] == client_id
    assert claims["aud"] == resource
    assert claims["exp"] > time.time()


def test_unauthenticated_call_gets_401_and_metadata(oauth: OAuthSetup) -> None:
    r = httpx.post(oauth.url, headers={"accept": ACCEPT},
                   json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status_code == 401, r.text
    meta_url = f"http://127.0.0.1:{oauth.port}/.well-known/oauth-protected-resource/mcp"
    assert r.headers["www-authenticate"].startswith(
        f'Bearer resource_metadata="{meta_url}", scope="mcp:tools"')
    for url in (meta_url, f"http://127.0.0.1:{oauth.port}/.well-known/oauth-protected-resource"):
        doc = httpx.get(url).json()
        assert doc["resource"] == oauth.url
        assert doc["authorization_servers"] == [oauth.issuer]
        assert doc["scopes_supported"] == ["mcp:tools"]


def test_sdk_client_credentials_with_secret(oauth: OAuthSetup) -> None:
    async def main() -> None:
        auth = ClientCredentialsOAuthProvider(
            server_url=oauth.url, storage=MemoryStorage(), client_id="agent-secret",
            client_secret=CLIENT_SECRET, scope="mcp:tools", issuer=oauth.issuer)
        async with _client(auth, oauth.url) as c:
            assert _text(await c.call_tool("add", {"a": 2, "b": 3})) == "5"
            who = json.loads(_text(await c.call_tool("whoami", {})))
            headers = {k.lower(): v for k, v in who["headers"].items()}
            assert "authorization" not in headers, headers
            assert "dpop" not in headers, headers
            _check_identity(headers["turnpike-identity"], oauth.url, oauth.issuer, "agent-secret")
            # Dual rail: the token skips the puzzle.
            assert _text(await c.call_tool("echo", {"text": "signed in"})) == "signed in"

    anyio.run(main)


def test_sdk_client_credentials_with_signed_jwt(oauth: OAuthSetup) -> None:
    async def main() -> None:
        params = SignedJWTParameters(issuer="agent-jwt", subject="agent-jwt",
                                     signing_key=oauth.client_key_pem, signing_algorithm="ES256",
                                     lifetime_seconds=60)
        auth = PrivateKeyJWTOAuthProvider(
            server_url=oauth.url, storage=MemoryStorage(), client_id="agent-jwt",
            assertion_provider=params.create_assertion_provider(), scope="mcp:tools",
            issuer=oauth.issuer)
        async with _client(auth, oauth.url) as c:
            assert _text(await c.call_tool("add", {"a": 20, "b": 22})) == "42"
            who = json.loads(_text(await c.call_tool("whoami", {})))
            headers = {k.lower(): v for k, v in who["headers"].items()}
            assert "authorization" not in headers, headers
            _check_identity(headers["turnpike-identity"], oauth.url, oauth.issuer, "agent-jwt")

    anyio.run(main)


def test_scope_too_narrow_is_403(oauth: OAuthSetup) -> None:
    token_endpoint = httpx.get(f"{oauth.issuer}/.well-known/openid-configuration").json()[
        "token_endpoint"]
    r = httpx.post(token_endpoint, auth=("agent-secret", CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "resource": oauth.url,
                         "scope": "mcp:admin"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = httpx.post(oauth.url, headers={"accept": ACCEPT, "authorization": f"Bearer {token}"},
                   json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "add", "arguments": {"a": 1, "b": 2}}})
    assert r.status_code == 403, r.text
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="mcp:tools"' in r.headers["www-authenticate"]
    # Any valid token will do for whoami.
    r = httpx.post(oauth.url, headers={"accept": ACCEPT, "authorization": f"Bearer {token}"},
                   json={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "whoami", "arguments": {}}})
    assert r.status_code == 200, r.text
