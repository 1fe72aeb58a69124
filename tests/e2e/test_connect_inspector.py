"""The MCP Inspector's command-line client (`@modelcontextprotocol/inspector-cli`, npm) launches
`turnpike connect` over stdio and calls priced tools through a turnpike gateway, once per rail:
proof-of-work solved, L402 paid with the dev Lightning backend's wallet, and OAuth client
credentials against oidc-provider.

The Inspector knows nothing of payments or puzzles: each call succeeding with the right answer,
and the bridge's spend log naming the rail, shows that the bridge did the work.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

# The gateways these tests call through are the ones test_connect.py sets up.
from test_connect import (  # noqa: F401  (pytest fixtures, used by name)
    L402Setup,
    OAuthGw,
    l402,
    oauth_gw,
    pow_everything,
    spend_log,
    wallet_flags,
)
from turnpike_e2e import DEPS, NODE22, TURNPIKE, require_file

INSPECTOR = DEPS / "@modelcontextprotocol" / "inspector-cli" / "build" / "index.js"
# The CLI finds its own package.json through a path relative to the working directory
# ("../package.json"), so it is run from its build folder.
INSPECTOR_CWD = INSPECTOR.parent


def inspector(url: str, state: Path, *flags: str, tool: str, args: dict[str, object],
              env: dict[str, str] | None = None) -> dict:
    """`inspector-cli turnpike connect <url> … --method tools/call`; the parsed result."""
    require_file(NODE22, "run scripts/setup-test-deps")
    require_file(INSPECTOR, "run scripts/setup-test-deps")
    require_file(TURNPIKE, "cargo build -p turnpike")
    cmd = [str(NODE22), str(INSPECTOR), str(TURNPIKE), "connect", url, "--state-dir", str(state),
           *flags, "--method", "tools/call", "--tool-name", tool]
    for k, v in args.items():
        cmd += ["--tool-arg", f"{k}={v}"]
    full_env = {**os.environ, "RUST_LOG": "warn", **(env or {})}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=full_env,
                       cwd=INSPECTOR_CWD)
    assert r.returncode == 0, f"inspector-cli exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return json.loads(r.stdout)


def inspector_list(url: str, state: Path) -> list[str]:
    require_file(INSPECTOR, "run scripts/setup-test-deps")
    cmd = [str(NODE22), str(INSPECTOR), str(TURNPIKE), "connect", url, "--state-dir", str(state),
           "--method", "tools/list"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                       env={**os.environ, "RUST_LOG": "warn"}, cwd=INSPECTOR_CWD)
    assert r.returncode == 0, r.stderr[-2000:]
    return [t["name"] for t in json.loads(r.stdout)["tools"]]


def result_text(result: dict) -> str:
    return "\n".join(b.get("text", "") for b in result.get("content", []))


def test_inspector_pow(pow_everything: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert "get-sum" in inspector_list(pow_everything, state)
    r = inspector(pow_everything, state, tool="get-sum", args={"a": 20, "b": 22})
    assert not r.get("isError"), r
    assert "42" in result_text(r)
    log = spend_log(state)
    assert [(e["rail"], e["status"]) for e in log] == [("pow", "solved")], log


def test_inspector_l402(l402: L402Setup, tmp_path: Path) -> None:
    state = tmp_path / "state"
    flags, env = wallet_flags(l402)
    before = l402.payments()
    r = inspector(l402.url, state, *flags, tool="add", args={"a": 3, "b": 4}, env=env)
    assert not r.get("isError"), r
    assert "7" in result_text(r)
    log = spend_log(state)
    assert [(e["rail"], e["status"]) for e in log] == [("l402", "paid")], log
    assert l402.payments() == before + 1


def test_inspector_oauth_client_credentials(oauth_gw: OAuthGw, tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = inspector(oauth_gw.url, state, "--oauth-client-id", "agent-secret",
                  "--oauth-client-secret-env", "TP_CONNECT_SECRET", tool="add",
                  args={"a": 40, "b": 2})
    assert not r.get("isError"), r
    assert "42" in result_text(r)
    creds = json.loads((state / "credentials.json").read_text())
    assert len(creds["oauth"]) == 1 and creds["oauth"][0]["resource"] == oauth_gw.url
