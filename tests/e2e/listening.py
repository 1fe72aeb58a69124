"""Processes that bind port 0 and say where they listen: the test reads the address from their
output instead of picking a free port, releasing it and handing it over (which races with every
other process on the machine).

- `start_fixture`: `turnpike-fixture --listen 127.0.0.1:0`, which prints
  `turnpike-fixture listening on http://127.0.0.1:<port>/mcp`;
- `start_gateway_config`: `turnpike serve` with `listen = "127.0.0.1:0"`, JSON logs, whose
  `gateway listening` line names the bound address;
- `start_demo`: `turnpike demo --listen 127.0.0.1:0`, whose steps name the gateway's URL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from turnpike_e2e import FIXTURE, TURNPIKE, Proc, require_file, wait_until

ADDR = re.compile(r"127\.0\.0\.1:(\d+)")


def wait_for_output(proc: Proc, find, what: str, timeout: float = 30.0):
    """Waits until `find(output so far)` returns something; returns it. Fails at once, with the
    log, when the process exits first."""
    found: list = []

    def ready() -> bool:
        text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        got = find(text)
        if got is not None:
            found.append(got)
            return True
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before {what}; "
                               f"log:\n{proc.log_tail()}")
        return False

    try:
        wait_until(ready, timeout, f"{proc.name}: {what}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; log:\n{proc.log_tail()}") from None
    return found[0]


def start_fixture(work: Path, name: str, *flags: str) -> tuple[Proc, str]:
    """The fixture MCP server on an ephemeral loopback port; its endpoint URL."""
    require_file(FIXTURE, "cargo build -p turnpike-fixture")
    proc = Proc(name, [str(FIXTURE), "--listen", "127.0.0.1:0", *flags], work / f"{name}.log")

    def find(text: str) -> str | None:
        m = re.search(r"turnpike-fixture listening on (http://127\.0\.0\.1:\d+\S*)", text)
        return m.group(1) if m else None

    return proc, wait_for_output(proc, find, "saying where it listens")


def start_gateway_config(work: Path, name: str, config: str) -> tuple[Proc, str]:
    """`turnpike serve` with this configuration, whose `[server] listen` must be
    `127.0.0.1:0`; its MCP endpoint URL (path /mcp)."""
    require_file(TURNPIKE, "cargo build -p turnpike")
    path = work / f"{name}.toml"
    path.write_text(config)
    proc = Proc(name, [str(TURNPIKE), "serve", "--config", str(path), "--log-format", "json"],
                work / f"{name}.log", env={"RUST_LOG": "info"})

    def find(text: str) -> int | None:
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("message") == "gateway listening":
                m = ADDR.search(str(rec.get("listen", "")))
                if m:
                    return int(m.group(1))
        return None

    port = wait_for_output(proc, find, "logging where it listens")
    return proc, f"http://127.0.0.1:{port}/mcp"


def start_demo(work: Path, name: str, *flags: str) -> tuple[Proc, str]:
    """`turnpike demo` on an ephemeral loopback port, once it has printed its steps; the
    steps (everything it printed so far)."""
    require_file(TURNPIKE, "cargo build -p turnpike")
    proc = Proc(name, [str(TURNPIKE), "demo", "--listen", "127.0.0.1:0", *flags],
                work / f"{name}.log", env={"RUST_LOG": "warn"})

    def find(text: str) -> str | None:
        return text if "Ctrl-C stops the demo." in text else None

    return proc, wait_for_output(proc, find, "printing its steps")
