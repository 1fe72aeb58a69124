"""The `turnpike` command line: check, solve, and serve configured by flags alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

from turnpike_e2e import TURNPIKE, PortTaken, Proc, RawSession, on_free_port, parse_www_authenticate, pow_challenges


def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(TURNPIKE), *argv], input=stdin.encode(), capture_output=True, timeout=60)


GOOD = """\
[server]
listen = "127.0.0.1:8402"
challenge_mode = "auto"

[upstream]
url = "http://127.0.0.1:3001/mcp"

[tools.default]
pow = 200000

[tools.echo]
free = true
"""


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    f = tmp_path / "good.toml"
    f.write_text(GOOD)
    r = run("check", "--config", str(f))
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def test_check_points_at_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace('challenge_mode = "auto"', 'challenge_mode = "sometimes"'))
    r = run("check", "--config", str(f))
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, out
    assert f"{f}:3:" in out, out


def test_solve_rejects_garbage() -> None:
    r = run("solve", "not a challenge")
    assert r.returncode != 0
    assert r.stdout.strip() == b""


def test_serve_from_flags_alone(work: Path, everything: str) -> None:
    p = Proc("gw-flags", [str(TURNPIKE), "serve", "--listen", "127.0.0.1:0", "--upstream", everything,
                          "--pow-effort", "5000", "--challenge-mode", "http", "--data-dir",
                          str(work / "gw-flags-data")], work / "gw-flags.log")
    try:
        port = p.reported_port("gateway")
        with RawSession(f"http://127.0.0.1:{port}/mcp") as s:
            s.initialize()
            r, _ = s.call_tool("get-sum", {"a": 1, "b": 1})
            assert r.status_code == 402, r.text[:300]
            params = dict(parse_www_authenticate(pow_challenges(r)[0])[1])
            assert params["effort"] == "5000"
    finally:
        p.stop()


def test_demo_serves_a_gated_fixture(work: Path) -> None:
    """`turnpike demo`: the quick start works with the Python SDK."""
    import json

    import anyio
    from mcp import Client

    from turnpike_e2e import cli_solve_meta

    # The demo wants a fixed port: one picked here, another should the demo find it taken.
    def start(port: int) -> tuple[Proc, int]:
        p = Proc("demo", [str(TURNPIKE), "demo", "--listen", f"127.0.0.1:{port}", "--effort", "5000"],
                 work / "demo.log")
        try:
            assert p.reported_port("gateway") == port
        except PortTaken:
            p.stop()
            raise
        return p, port

    p, port = on_free_port(start)
    try:

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:
                echo = await c.call_tool("echo", {"text": "demo"})
                first = await c.call_tool("add", {"a": 1, "b": 1})
                meta = cli_solve_meta(stdin=json.dumps(first.model_dump(by_alias=True, exclude_none=True)))
                paid = await c.call_tool("add", {"a": 1, "b": 1}, meta=meta)
                return echo, first, paid

        echo, first, paid = anyio.run(main)
        assert echo.is_error is False and echo.content[0].text == "demo"
        assert first.is_error is True
        assert first.structured_content["turnpike"]["challenges"][0]["effort"] == 5000
        assert paid.is_error is False and paid.content[0].text == "2"
    finally:
        p.stop()
