"""Fixtures for turnpike's end-to-end tests.

Every server runs as a real process on 127.0.0.1 on a port it binds itself (port 0, read back
from its output), with a temporary config and data directory, and its output in a log file; a failing test shows the tail of every live process's
log. Gateways are started once per session and per upstream kind:

- "http":  `turnpike serve` in front of server-everything over Streamable HTTP
- "stdio": `turnpike serve` launching server-everything as a stdio child
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from turnpike_e2e import (  # noqa: E402
    Gateway,
    GatewayConfig,
    Proc,
    everything_stdio_command,
    recorder_stdio_command,
    start_everything_http,
    start_gateway,
    start_recorder_http,
)

UPSTREAM_KINDS = ["http", "stdio"]

# Prices of the main gateway (efforts are small: the suite must stay fast).
DEFAULT_EFFORT = 4000
SUM_EFFORT = 6000
RESOURCE_EFFORT = 3000
SUBPUZZLES = 4


def main_config(**upstream: object) -> GatewayConfig:
    return GatewayConfig(
        default_pow=DEFAULT_EFFORT,
        subpuzzles=SUBPUZZLES,
        tools={"echo": {"free": True}, "get-sum": {"pow": SUM_EFFORT}},
        methods={"resources/read": {"pow": RESOURCE_EFFORT}},
        **upstream,  # type: ignore[arg-type]
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in list(Proc.LIVE):
            state = "running" if p.alive() else f"exited {p.popen.returncode}"
            rep.sections.append((f"log of {p.name} ({state}): {p.log_path}", p.log_tail(80)))


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("turnpike-e2e")


@pytest.fixture(scope="session")
def everything(work: Path) -> Iterator[str]:
    """server-everything over Streamable HTTP, straight (no gateway): the reference."""
    proc, url = start_everything_http(work, "everything-direct")
    yield url
    proc.stop()


def _gateway_for(kind: str, work: Path, name: str, cfg_for) -> Iterator[Gateway]:
    procs: list[Proc] = []
    if kind == "http":
        up, url = start_everything_http(work, f"{name}-upstream")
        procs.append(up)
        cfg = cfg_for(upstream_url=url)
    else:
        cfg = cfg_for(upstream_command=everything_stdio_command())
    gw = start_gateway(work, name, cfg)
    yield gw
    gw.proc.stop()
    for p in procs:
        p.stop()


@pytest.fixture(scope="session", params=UPSTREAM_KINDS)
def gw(request: pytest.FixtureRequest, work: Path) -> Iterator[Gateway]:
    """The main gateway: echo free, get-sum priced at SUM_EFFORT, every other tool at
    DEFAULT_EFFORT, resources/read at RESOURCE_EFFORT; challenge mode auto."""
    yield from _gateway_for(request.param, work, f"gw-{request.param}", main_config)


@pytest.fixture(scope="session", params=UPSTREAM_KINDS)
def gw_short(request: pytest.FixtureRequest, work: Path) -> Iterator[Gateway]:
    """Like `gw`, with challenges that expire after 2 seconds."""

    def cfg(**up: object) -> GatewayConfig:
        c = main_config(**up)
        c.expiry_secs = 2
        return c

    yield from _gateway_for(request.param, work, f"gw-short-{request.param}", cfg)


@pytest.fixture(scope="session", params=UPSTREAM_KINDS)
def gw_record(request: pytest.FixtureRequest, work: Path) -> Iterator[tuple[Gateway, Path, str]]:
    """A gateway in front of the recording upstream (tests/e2e/recorder.py): `record` priced,
    `record-free` free. Yields (gateway, record file, kind)."""
    kind = request.param
    procs: list[Proc] = []
    if kind == "http":
        up, url, record = start_recorder_http(work, "recorder-http")
        procs.append(up)
        cfg = GatewayConfig(upstream_url=url)
    else:
        record = work / "recorder-stdio.jsonl"
        cfg = GatewayConfig(upstream_command=recorder_stdio_command(record))
    cfg.default_pow = DEFAULT_EFFORT
    cfg.tools = {"record-free": {"free": True}}
    gw = start_gateway(work, f"gw-record-{kind}", cfg)
    yield gw, record, kind
    gw.proc.stop()
    for p in procs:
        p.stop()


FIXTURE_MODES = ["http", "http-stateless-json", "stdio"]


@pytest.fixture(scope="session", params=FIXTURE_MODES)
def gw_fixture(request: pytest.FixtureRequest, work: Path) -> Iterator[tuple[Gateway, str]]:
    """A gateway in front of the project's fixture server (turnpike-fixture): echo free, every
    other tool (add, slow, whoami) at DEFAULT_EFFORT. Yields (gateway, mode)."""
    from turnpike_e2e import FIXTURE, require_file, start_fixture_http

    mode = request.param
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    procs: list[Proc] = []
    if mode == "stdio":
        cfg = GatewayConfig(upstream_command=[str(FIXTURE), "--stdio"])
    else:
        flags = ["--stateless", "--json"] if mode == "http-stateless-json" else []
        up, port = start_fixture_http(work, f"fixture-{mode}", *flags)
        procs.append(up)
        cfg = GatewayConfig(upstream_url=f"http://127.0.0.1:{port}/mcp")
    cfg.default_pow = DEFAULT_EFFORT
    cfg.subpuzzles = SUBPUZZLES
    cfg.tools = {"echo": {"free": True}}
    gw = start_gateway(work, f"gw-fixture-{mode}", cfg)
    yield gw, mode
    gw.proc.stop()
    for p in procs:
        p.stop()
