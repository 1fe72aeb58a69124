"""Prices on the merged endpoint when tool names clash, with real upstreams: a small HTTP MCP
server whose tool list grows after start (tests/e2e/growing_server.py, mount "spy") and
server-everything over stdio (mount "ev"), both with a tool `echo` once the first one grows.

The merged endpoint then publishes `spy_echo` and `ev_echo` instead of `echo`; each must keep a
price (never run unpaid), and `echo`, no longer published, must be an unknown tool (no
challenge)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import SUBPUZZLES
from turnpike_e2e import (ACCEPT, TURNPIKE, Proc, Token, authorization,
                          everything_stdio_command, parse_www_authenticate, pow_challenges,
                          py_solve, require_file, toml_str, wait_until)

MODERN = "2026-07-28"
GROWING = Path(__file__).resolve().parent / "growing_server.py"


def port_from_log(proc: Proc, pattern: str, what: str) -> int:
    """The port a process reports in its log (it bound port 0 itself)."""
    found: list[int] = []

    def seen() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; log:\n{proc.log_tail()}")
        m = re.search(pattern, proc.log_path.read_text(errors="replace"))
        if m:
            found.append(int(m.group(1)))
        return bool(found)

    wait_until(seen, 30, what)
    return found[0]


@pytest.fixture(scope="module")
def merged(work: Path) -> Iterator[tuple[str, str]]:
    """(gateway base URL, growing server base URL)."""
    require_file(TURNPIKE, "cargo build -p turnpike")
    spy = Proc("growing", [sys.executable, str(GROWING)], work / "growing.log")
    spy_port = port_from_log(spy, r"port (\d+)", "the growing server's port")
    config = work / "gw-merge-prices.toml"
    config.write_text(f"""[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = {toml_str(str(work / "gw-merge-prices-data"))}

[pow]
subpuzzles = {SUBPUZZLES}

[tools.echo]
pow = 20000
[tools."spy/echo"]
pow = 21000
[limits.tools."spy/echo"]                 # the limit class follows the tool like its price
burst = 1
rate = "1/h"

[[mount]]
path = "/spy/mcp"
name = "spy"
upstream = {{ url = "http://127.0.0.1:{spy_port}/mcp" }}
[mount.tools.default]
pow = 30000

[[mount]]
path = "/ev/mcp"
name = "ev"
upstream = {{ command = [{", ".join(toml_str(a) for a in everything_stdio_command())}] }}
[mount.tools.get-sum]
pow = 25000

[merge]
path = "/all/mcp"
""")
    check = subprocess.run([str(TURNPIKE), "check", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "merged /all/mcp over spy, ev; tools: echo pow 20000" in check.stdout, check.stdout
    assert "spy/echo pow 21000" in check.stdout, check.stdout
    assert "mount ev /ev/mcp" in check.stdout and "get-sum pow 25000" in check.stdout, check.stdout
    gw = Proc("gw-merge-prices", [str(TURNPIKE), "serve", "--config", str(config)],
              work / "gw-merge-prices.log")
    port = port_from_log(gw, r"gateway listening.*?127\.0\.0\.1:(\d+)", "the gateway's port")
    yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{spy_port}"
    gw.stop()
    spy.stop()


def post(base: str, method: str, params: dict, name: str | None = None,
         auth: str | None = None) -> httpx.Response:
    h = {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
         "Mcp-Method": method, "Turnpike-Challenge": "http"}
    if auth is not None:
        h["Authorization"] = auth
    if name is not None:
        h["Mcp-Name"] = name
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    return httpx.post(base + "/all/mcp", json=body, headers=h, timeout=60)


def call(base: str, tool: str, auth: str | None = None) -> httpx.Response:
    return post(base, "tools/call", {"name": tool, "arguments": {"message": "hi"}}, tool, auth)


def paid_call(base: str, tool: str) -> httpx.Response:
    """The call, challenged, solved and sent again with its solution."""
    [line] = pow_challenges(call(base, tool))
    token = dict(parse_www_authenticate(line)[1])["challenge"]
    return call(base, tool, authorization(token, py_solve(token)))


def listed(base: str) -> dict[str, dict]:
    r = post(base, "tools/list", {})
    assert r.status_code == 200, r.text[:300]
    return {t["name"]: t for t in r.json()["result"]["tools"]}


def effort_asked(r: httpx.Response) -> int:
    """The proof-of-work effort a 402 asks for; fails on anything else (a result, an error)."""
    assert r.status_code == 402, f"{r.status_code} {r.text[:300]}"
    [line] = pow_challenges(r)
    params = dict(parse_www_authenticate(line)[1])
    return Token.decode(params["challenge"]).effort


def test_prices_survive_a_clash_that_appears_after_start(merged: tuple[str, str]) -> None:
    base, spy = merged
    # Before: echo is ev's alone, published as it is, priced by [tools.echo]. (The stdio child
    # starts with the first list; until it answers, the list holds spy's tools only.)
    wait_until(lambda: {"echo", "spy-only", "get-sum"} <= listed(base).keys(), 30,
               "both mounts listed", interval=0.3)
    tools = listed(base)
    assert tools["echo"]["_meta"]["turnpike/price"]["free"] is False
    assert effort_asked(call(base, "echo")) == 20000
    # A tool no top-level price names costs its mount's price: spy's default, ev's get-sum.
    assert effort_asked(call(base, "spy-only")) == 30000
    assert effort_asked(call(base, "get-sum")) == 25000

    # The spy upstream ships its own echo. Nothing is listed first: the call to the new name
    # makes the merged endpoint read the lists again (at most once a second), and is priced.
    assert httpx.post(spy + "/grow", content=b"{}", timeout=10).status_code == 200
    seen: list[httpx.Response] = []

    def spy_echo_known() -> bool:
        r = call(base, "spy_echo")
        assert "spy ran" not in r.text, f"spy_echo ran unpaid: {r.text[:300]}"
        seen.append(r)
        return r.status_code == 402

    wait_until(spy_echo_known, 20, "spy_echo published and priced", interval=0.3)
    assert effort_asked(seen[-1]) == 21000, "[tools.\"spy/echo\"] names it"
    assert effort_asked(call(base, "ev_echo")) == 20000, "[tools.echo] names it by its own name"

    tools = listed(base)
    assert "echo" not in tools and {"spy_echo", "ev_echo"} <= tools.keys(), sorted(tools)
    for name in ("spy_echo", "ev_echo"):
        price = tools[name]["_meta"]["turnpike/price"]
        assert price["free"] is False and price["offers"][0]["rail"] == "pow", price
    # echo is no longer published: the unknown-tool answer, and nothing to pay for.
    r = call(base, "echo")
    assert r.status_code == 200, r.text[:300]
    assert not pow_challenges(r) and "www-authenticate" not in r.headers
    err = r.json()["error"]
    assert err["code"] == -32602 and "echo" in err["message"], err
    # A name nothing publishes, likewise, and never a challenge.
    r = call(base, "no-such-tool")
    assert r.status_code == 200 and r.json()["error"]["code"] == -32602, r.text[:300]
    assert "www-authenticate" not in r.headers

    # The limit class [limits.tools."spy/echo"] follows the published spy_echo too: one paid
    # call passes under it, the next is limited by it.
    r = paid_call(base, "spy_echo")
    assert r.status_code == 200 and "spy ran" in r.text, r.text[:300]
    assert "spy/echo" in r.headers.get("ratelimit-policy", ""), dict(r.headers)
    r = paid_call(base, "spy_echo")
    assert r.status_code == 429, r.text[:300]
    assert "spy/echo" in r.text, r.text[:300]
