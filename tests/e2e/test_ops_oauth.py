"""The log scan for the OAuth rail: a real access token from oidc-provider (client credentials),
used as a Bearer token through the gateway of tests/e2e/test_oauth.py; afterwards neither the
token, nor its signature, nor the client secret appears in the gateway's log, and the call line
names the rail. (The proof-of-work and L402 rails are scanned in test_ops.py.)"""

from __future__ import annotations

import re

import httpx

from test_oauth import CLIENT_SECRET, OAuthSetup, oauth  # noqa: F401 - the fixture
from turnpike_e2e import ACCEPT


def test_oauth_tokens_never_reach_the_log(oauth: OAuthSetup) -> None:  # noqa: F811
    meta = httpx.get(f"{oauth.issuer}/.well-known/openid-configuration", timeout=10).json()
    r = httpx.post(meta["token_endpoint"], data={
        "grant_type": "client_credentials", "scope": "mcp:tools", "resource": oauth.url,
    }, auth=("agent-secret", CLIENT_SECRET), timeout=10)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 20, "b": 22}}}
    ok = httpx.post(oauth.url, json=body, timeout=30,
                    headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["content"][0]["text"] == "42"
    # A forged token: refused, and not logged either.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad = httpx.post(oauth.url, json=body, timeout=30,
                     headers={"Accept": ACCEPT, "Authorization": f"Bearer {forged}"})
    assert bad.status_code == 401
    log = oauth.gateway.log_path.read_text()
    assert re.search(r'turnpike::call.*rail="?oauth', log) or '"rail":"oauth"' in log, \
        "the call line names the OAuth rail"
    for secret in (token, forged, CLIENT_SECRET, *token.split("."), *forged.split(".")[-1:]):
        assert secret not in log, f"a secret ({secret[:12]}…) is in the gateway's log"
