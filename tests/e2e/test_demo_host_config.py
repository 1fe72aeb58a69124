"""`turnpike demo` prints an MCP host configuration that works for priced tools.

The demo's step for MCP hosts prints an `mcpServers` block whose server is `turnpike connect
<the demo's URL>` (command + args). These tests parse exactly that block from the demo's output
and hand it, unchanged, to two real MCP clients acting as the host:

- the Python `mcp` SDK's stdio client (`StdioServerParameters` from the block's command, args and
  env): it lists the tools and calls the priced `add`, and gets the sum;
- the MCP Inspector's CLI (`@modelcontextprotocol/inspector --cli --config <the block> --server
  turnpike-demo`), which reads the block as a host reads its settings file, doing the same call.

Neither client knows anything of proof-of-work: the answer, and the solve in the bridge's spend
log, show that `turnpike connect` did the work. The same client pointed at the demo's URL
directly gets the challenge back instead of the answer, which is why the demo prints the bridge.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client, StdioServerParameters

from listening import start_demo
from turnpike_e2e import DEPS, NODE22, require_file

INSPECTOR_PKG = DEPS / "@modelcontextprotocol" / "inspector"
INSPECTOR = INSPECTOR_PKG / "cli" / "build" / "cli.js"
SERVER = "turnpike-demo"


@dataclass
class Demo:
    url: str
    output: str
    block: dict


def host_block(output: str) -> dict:
    """The JSON object around the first `"mcpServers"` in the demo's output, as printed."""
    at = output.index('"mcpServers"')
    start = output.rindex("{", 0, at)
    block, _ = json.JSONDecoder().raw_decode(output[start:])
    return block


@pytest.fixture(scope="module")
def demo(work: Path) -> Iterator[Demo]:
    proc, output = start_demo(work, "demo-host-config", "--effort", "20000")
    try:
        m = re.search(r"gateway\s+(http://127\.0\.0\.1:\d+/mcp)", output)
        assert m, output
        yield Demo(m.group(1), output, host_block(output))
    finally:
        proc.stop()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME for the host's child: `turnpike connect` keeps its state in
    ~/.config/turnpike/connect, as it would on a user's machine."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("TURNPIKE_CONNECT_DIR", raising=False)
    return h


def spend_log(home: Path) -> list[tuple[str, str]]:
    p = home / ".config" / "turnpike" / "connect" / "spend.jsonl"
    if not p.exists():
        return []
    return [(e["rail"], e["status"]) for e in map(json.loads, p.read_text().splitlines())]


def text(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


def test_the_block_starts_turnpike_connect(demo: Demo) -> None:
    servers = demo.block["mcpServers"]
    assert list(servers) == [SERVER], servers
    server = servers[SERVER]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).exists(), server
    assert server["args"] == ["connect", demo.url], server
    # The demo says why the host is not pointed at the gateway itself.
    said = " ".join(demo.output.split())
    assert "a host cannot answer the gate's challenge" in said, demo.output
    assert "connect <url> --print-config" in said, demo.output


def test_python_sdk_runs_the_printed_block(demo: Demo, home: Path) -> None:
    server = demo.block["mcpServers"][SERVER]
    params = StdioServerParameters(command=server["command"], args=server["args"],
                                   env=server.get("env"))
    out: dict = {}

    async def main() -> None:
        async with Client(params) as c:
            out["tools"] = [t.name for t in (await c.list_tools()).tools]
            out["add"] = await c.call_tool("add", {"a": 2, "b": 3})
            out["echo"] = await c.call_tool("echo", {"text": "hello"})

    anyio.run(main)
    assert {"add", "echo"} <= set(out["tools"]), out["tools"]
    assert not out["add"].is_error, text(out["add"])
    assert text(out["add"]).strip() == "5", text(out["add"])
    assert not out["echo"].is_error and "hello" in text(out["echo"])
    # The priced call was solved by the bridge; the free one cost nothing.
    assert spend_log(home) == [("pow", "solved")]


def test_the_gateway_url_alone_does_not_answer_priced_calls(demo: Demo) -> None:
    """What the demo's step explains: a host speaking to the gateway directly gets the
    challenge, not the answer (free tools do work)."""
    out: dict = {}

    async def main() -> None:
        async with Client(demo.url) as c:
            out["add"] = await c.call_tool("add", {"a": 2, "b": 3})
            out["echo"] = await c.call_tool("echo", {"text": "hello"})

    anyio.run(main)
    assert out["add"].is_error, text(out["add"])
    sc = out["add"].structured_content or {}
    assert sc["turnpike"]["challenges"], sc
    assert not out["echo"].is_error and "hello" in text(out["echo"])


def inspector(config: Path, home: Path, *method: str) -> dict:
    """`mcp-inspector --cli --config <config> --server turnpike-demo <method…>`: its JSON."""
    require_file(NODE22, "run scripts/setup-test-deps")
    require_file(INSPECTOR, "run scripts/setup-test-deps")
    # The launcher starts its CLI with the `node` found on PATH: Node 22 first.
    env = {**os.environ, "HOME": str(home),
           "PATH": f"{NODE22.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run([str(NODE22), str(INSPECTOR), "--cli", "--config", str(config),
                        "--server", SERVER, *method],
                       capture_output=True, text=True, timeout=90, env=env,
                       # The CLI finds its package.json relative to the working directory.
                       cwd=INSPECTOR.parent)
    assert r.returncode == 0, f"inspector exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    start = r.stdout.index("{")
    out, _ = json.JSONDecoder().raw_decode(r.stdout[start:])
    return out


def test_inspector_cli_runs_the_printed_block(demo: Demo, home: Path, tmp_path: Path) -> None:
    # The block, byte for byte as printed, is the Inspector's settings file.
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps(demo.block))
    listed = inspector(config, home, "--method", "tools/list")
    assert "add" in [t["name"] for t in listed["tools"]], listed
    r = inspector(config, home, "--method", "tools/call", "--tool-name", "add",
                  "--tool-arg", "a=2", "--tool-arg", "b=3")
    assert not r.get("isError"), r
    assert [b.get("text") for b in r["content"]] == ["5"], r
    assert spend_log(home) == [("pow", "solved")]
