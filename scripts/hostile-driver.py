"""The driver behind scripts/hostile: every anonymous flood at once against one gateway, and a
well-behaved caller beside them whose success rate and latency are the verdict.

It starts the fixture MCP server (HTTP, stateless) and `turnpike serve` in front of it, both on
port 0 (each reports the port it bound), with a stdio mount whose children are the fixture over
stdio and an admin listener. The configuration is the README's defaults but for the prices the
floods need. Then:

1. quiet phase (--quiet seconds): the well-behaved caller alone, from 127.0.0.2, at --rate calls
   per second: `tools/call echo` priced by proof-of-work (challenge, solve, retry with the
   solution; the whole round is one measured call);
2. hostile phase (--duration seconds): the same caller, with every flood below running at once,
   each from its own loopback addresses, each bounded in connections, rate and time:

   challenge   unauthenticated priced calls as fast as a few keep-alive connections go (1 address)
   forged      forged PoW credentials (1 address)
   invoices    unauthenticated calls on an L402 price: one invoice each if nothing stops them
               (16 addresses)
   silent      TCP connections that never send a byte (1,100 from 1 address, 400 from 8 more)
   slowloris   requests whose header arrives one byte a second (64 connections, 4 addresses)
   h2idle      HTTP/2 prior-knowledge connections that send the preface and SETTINGS, then
               nothing (200, 4 addresses)
   stdio       `initialize` on the stdio mount, each a new session (a child process) if nothing
               stops it (32 addresses)
   admin       requests to the admin listener with a foreign Host (1 address)

3. the report: per phase, the well-behaved caller's calls, success rate, p50/p99 latency; per
   flood, its answers by status; the gateway's resident memory, descriptors and live children at
   the end of the hostile phase. Verdict (exit 1 if not met): the success rate in the hostile
   phase is at least 99 % and its p50 and p99 are at most 2 × the quiet phase's (with a floor of
   5 ms, under which loopback timing is noise).

Only the Python standard library and the documented puzzle solver from tests/e2e/turnpike_e2e.py.
Loopback only; every process it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from turnpike_e2e import authorization, py_solve  # noqa: E402

WELL_BEHAVED = "127.0.0.2"
LAT_FLOOR_US = 5000.0


def log(msg: str) -> None:
    print(f"[hostile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


def service_manager_limits() -> None:
    """The open-file soft limit a service manager gives (1,024); the hard limit stays."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


class Proc:
    def __init__(self, name: str, argv: list[str], logfile: Path) -> None:
        self.name = name
        self.logfile = logfile
        self.fh = open(logfile, "wb")
        self.p = subprocess.Popen(argv, stdout=self.fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True, preexec_fn=service_manager_limits)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            text = self.logfile.read_text(errors="replace")
            m = rx.search(text)
            if m:
                return m
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.p.returncode}) before it was ready:\n{text[-2000:]}")
            time.sleep(0.05)
        raise SystemExit(f"{self.name} did not report /{pattern}/ within {timeout} s")

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.fh.close()


def proc_stats(pid: int) -> dict:
    """Resident memory, open descriptors and live descendants of a process."""
    out = {"rss_mb": None, "fds": None, "children": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        out["children"] = len(kids)
    except OSError:
        pass
    return out


# ------------------------------------------------------------------------------------------------
# A small HTTP/1.1 client on asyncio streams, bound to a chosen loopback source address
# ------------------------------------------------------------------------------------------------


async def open_from(src: str, port: int):
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 5)


def rpc(method: str, params: dict | None = None, id_: int = 1) -> bytes:
    msg = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None, host: str | None = None) -> bytes:
    h = {
        "Host": host or f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Content-Length": str(len(body)),
    }
    h.update(headers or {})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body


def get(port: int, path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def read_response(reader: asyncio.StreamReader, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"][0])), timeout)
    elif headers.get("transfer-encoding", [""])[0].lower() == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readline(), timeout)).strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            body += await asyncio.wait_for(reader.readexactly(size), timeout)
            await reader.readline()
    else:
        body = await asyncio.wait_for(reader.read(), timeout)
    return status, headers, body


class Flood:
    """Counts what one flood got back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: Counter[str] = Counter()

    def count(self, what: str) -> None:
        self.answers[what] += 1


async def request_loop(flood: Flood, src: str, port: int, make, until: float, pause: float = 0.0) -> None:
    """One keep-alive connection from `src`, sending `make()` requests until `until`."""
    while time.monotonic() < until:
        try:
            reader, writer = await open_from(src, port)
        except (OSError, asyncio.TimeoutError):
            flood.count("connect-failed")
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until:
                writer.write(make())
                await writer.drain()
                status, _, _ = await read_response(reader, timeout=max(0.1, until - time.monotonic()))
                flood.count(str(status))
                if pause:
                    await asyncio.sleep(pause)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
            flood.count("closed")
        finally:
            writer.close()


async def hold_silent(flood: Flood, src: str, port: int, n: int, until: float, payload: bytes = b"") -> None:
    """Opens `n` connections from `src` that send `payload` (maybe nothing) and then nothing; counts
    how many the gateway closed before `until`."""
    conns = []
    for _ in range(n):
        if time.monotonic() >= until:
            break
        try:
            r, w = await open_from(src, port)
            if payload:
                w.write(payload)
            conns.append((r, w))
            flood.count("opened")
        except (OSError, asyncio.TimeoutError):
            flood.count("refused")
            await asyncio.sleep(0.01)

    async def watch(r: asyncio.StreamReader) -> None:
        try:
            await asyncio.wait_for(r.read(65536), max(0.1, until - time.monotonic()))
            flood.count("closed-by-gateway")
        except (asyncio.TimeoutError, OSError):
            flood.count("still-open")

    await asyncio.gather(*(watch(r) for r, _ in conns))
    for _, w in conns:
        w.close()


async def slowloris(flood: Flood, src: str, port: int, n: int, until: float) -> None:
    head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n".encode()

    async def one() -> None:
        try:
            r, w = await open_from(src, port)
        except (OSError, asyncio.TimeoutError):
            flood.count("refused")
            return
        try:
            for b in head * 100:
                if time.monotonic() >= until:
                    flood.count("still-open")
                    return
                w.write(bytes([b]))
                await w.drain()
                await asyncio.sleep(1.0)
                if r.at_eof():
                    break
            flood.count("closed-by-gateway")
        except OSError:
            flood.count("closed-by-gateway")
        finally:
            w.close()

    await asyncio.gather(*(one() for _ in range(n)))


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS


async def initialize_flood(flood: Flood, src: str, port: int, path: str, until: float) -> None:
    params = {"protocolVersion": "2025-11-25", "capabilities": {},
              "clientInfo": {"name": "hostile", "version": "0"}}
    await request_loop(flood, src, port, lambda: post(port, path, rpc("initialize", params)), until, pause=0.02)


# ------------------------------------------------------------------------------------------------
# The well-behaved caller
# ------------------------------------------------------------------------------------------------


class Caller:
    """Calls `echo` (proof-of-work) at a steady rate from 127.0.0.2 over one keep-alive
    connection: challenge, solve, retry. A call succeeds when the retry returns a result."""

    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self.rate = rate
        self.lat_us: dict[str, list[float]] = {"quiet": [], "hostile": []}
        self.fail: dict[str, Counter[str]] = {"quiet": Counter(), "hostile": Counter()}
        self.phase = "quiet"
        self.stop = threading.Event()
        self.n = 0

    def _conn(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30, source_address=(WELL_BEHAVED, 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    @staticmethod
    def _read(f) -> tuple[int, dict, bytes]:
        status_line = f.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        headers: dict[str, list[str]] = {}
        while True:
            line = f.readline().decode("latin-1").strip()
            if not line:
                break
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        if "content-length" in headers:
            body = f.read(int(headers["content-length"][0]))
        else:
            body = b""
            while True:
                size = int(f.readline().strip() or b"0", 16)
                if size == 0:
                    f.readline()
                    break
                body += f.read(size)
                f.readline()
        return status, headers, body

    def one(self, s: socket.socket, f) -> None:
        self.n += 1
        args = {"name": "echo", "arguments": {"text": f"hello {self.n}"}}
        body = rpc("tools/call", args, self.n)
        s.sendall(post(self.port, "/mcp", body, {"Turnpike-Challenge": "http"}))
        status, headers, _ = self._read(f)
        if status != 402:
            raise RuntimeError(f"challenge {status}")
        line = next((v for v in headers.get("www-authenticate", []) if v.startswith("PoW ")), None)
        if line is None:
            raise RuntimeError("no PoW offer")
        token = re.search(r'challenge="([^"]+)"', line).group(1)
        sol = py_solve(token)
        s.sendall(post(self.port, "/mcp", body, {"Authorization": authorization(token, sol)}))
        status, _, resp = self._read(f)
        if status != 200 or b'"result"' not in resp:
            raise RuntimeError(f"paid call {status}")

    def run(self) -> None:
        s = f = None
        period = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            nxt += period
            phase = self.phase
            t0 = time.perf_counter()
            try:
                if s is None:
                    s = self._conn()
                    f = s.makefile("rb")
                self.one(s, f)
                self.lat_us[phase].append((time.perf_counter() - t0) * 1e6)
            except Exception as e:  # noqa: BLE001 — every failure is counted, none ends the run
                self.fail[phase][str(e)[:60]] += 1
                if s is not None:
                    s.close()
                s = f = None
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                nxt = time.monotonic()
        if s is not None:
            s.close()


def pct(v: list[float], p: float) -> float:
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


async def hostile(port: int, admin_port: int, duration: float) -> list[Flood]:
    until = time.monotonic() + duration
    floods = {n: Flood(n) for n in ["challenge", "forged", "invoices", "silent", "slowloris", "h2idle",
                                    "stdio", "admin"]}
    tasks = []
    call = rpc("tools/call", {"name": "echo", "arguments": {"text": "flood"}})
    paid = rpc("tools/call", {"name": "paid", "arguments": {"text": "flood"}})
    forged = {"Authorization": 'PoW challenge="AQ' + "A" * 146 + '", solution="1"'}
    for _ in range(4):
        tasks.append(request_loop(floods["challenge"], "127.0.1.1", port,
                                  lambda: post(port, "/mcp", call, {"Turnpike-Challenge": "http"}), until))
    for _ in range(2):
        tasks.append(request_loop(floods["forged"], "127.0.1.2", port, lambda: post(port, "/mcp", call, forged), until))
    for i in range(16):
        tasks.append(request_loop(floods["invoices"], f"127.0.3.{i + 1}", port,
                                  lambda: post(port, "/mcp", paid, {"Turnpike-Challenge": "http"}), until, pause=0.01))
    tasks.append(hold_silent(floods["silent"], "127.0.2.1", port, 1100, until))
    for i in range(8):
        tasks.append(hold_silent(floods["silent"], f"127.0.2.{i + 2}", port, 50, until))
    for i in range(4):
        tasks.append(slowloris(floods["slowloris"], f"127.0.4.{i + 1}", port, 16, until))
        tasks.append(hold_silent(floods["h2idle"], f"127.0.5.{i + 1}", port, 50, until, H2_PREFACE))
    for i in range(32):
        tasks.append(initialize_flood(floods["stdio"], f"127.0.6.{i + 1}", port, "/stdio/mcp", until))
    if admin_port:
        tasks.append(request_loop(floods["admin"], "127.0.7.1", admin_port,
                                  lambda: get(admin_port, "/metrics", "attacker.example"), until, pause=0.01))
    await asyncio.gather(*tasks)
    return list(floods.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with turnpike and turnpike-fixture")
    ap.add_argument("--work", required=True, help="scratch folder")
    ap.add_argument("--quiet", type=float, default=15)
    ap.add_argument("--duration", type=float, default=45)
    ap.add_argument("--rate", type=float, default=20, help="well-behaved calls per second")
    ap.add_argument("--effort", type=int, default=2000, help="echo's proof-of-work price")
    a = ap.parse_args()
    # The floods hold a few thousand sockets of their own.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    work = Path(a.work)
    binp = Path(a.bin)
    procs: list[Proc] = []
    try:
        fx = Proc("fixture", [str(binp / "turnpike-fixture"), "--listen", "127.0.0.1:0", "--stateless", "--json"],
                  work / "fixture.log")
        procs.append(fx)
        fx_url = fx.wait_for(r"listening on (http://\S+)").group(1)
        cfg = work / "hostile.toml"
        cfg.write_text(f"""# written by scripts/hostile: the README's defaults but for the prices
[server]
listen = "127.0.0.1:0"
data_dir = "{work / 'data'}"

[upstream]
url = "{fx_url}"

[[mount]]
path = "/stdio/mcp"
name = "local"
upstream = {{ command = ["{binp / 'turnpike-fixture'}", "--stdio"] }}

[tools.echo]
pow = {a.effort}
[tools.paid]
l402 = {{ sat = 10 }}

[lightning]
backend = "dev"

[admin]
listen = "127.0.0.1:0"
token = "hostile-run-admin-token-0123456789"
""")
        gw = Proc("gateway", [str(binp / "turnpike"), "serve", "--config", str(cfg)], work / "gateway.log")
        procs.append(gw)
        port = int(gw.wait_for(r"gateway listening.*?127\.0\.0\.1:(\d+)").group(1))
        m = re.search(r"admin listening.*?127\.0\.0\.1:(\d+)", (work / "gateway.log").read_text())
        if m is None:
            try:
                m = gw.wait_for(r"admin listening.*?127\.0\.0\.1:(\d+)", timeout=5)
            except SystemExit:
                m = None
        admin_port = int(m.group(1)) if m else 0
        log(f"fixture {fx_url}, gateway 127.0.0.1:{port}, admin {admin_port or 'off'}")

        caller = Caller(port, a.rate)
        t = threading.Thread(target=caller.run, daemon=True)
        t.start()
        log(f"quiet phase: {a.quiet:.0f} s, the well-behaved caller alone")
        time.sleep(a.quiet)
        caller.phase = "hostile"
        log(f"hostile phase: {a.duration:.0f} s, every flood at once")
        floods = asyncio.run(hostile(port, admin_port, a.duration))
        stats = proc_stats(gw.p.pid)
        caller.stop.set()
        t.join(timeout=60)
    finally:
        for p in reversed(procs):
            p.stop()

    print()
    print("turnpike hostile run: a well-behaved caller (PoW-priced tools/call, challenge + solve + retry)")
    print(f"  from {WELL_BEHAVED} at {a.rate:g} calls/s, alone for {a.quiet:g} s, then beside every flood for {a.duration:g} s")
    print()
    print(f"{'phase':<8} {'calls':>6} {'ok %':>7} {'p50 ms':>8} {'p99 ms':>8}  failures")
    res = {}
    for phase in ("quiet", "hostile"):
        ok = len(caller.lat_us[phase])
        bad = sum(caller.fail[phase].values())
        rate = 100.0 * ok / max(1, ok + bad)
        p50, p99 = pct(caller.lat_us[phase], 50), pct(caller.lat_us[phase], 99)
        res[phase] = (ok, rate, p50, p99)
        print(f"{phase:<8} {ok + bad:>6} {rate:>7.2f} {p50 / 1000:>8.2f} {p99 / 1000:>8.2f}  "
              f"{dict(caller.fail[phase]) or '-'}")
    print()
    print("floods (answers by HTTP status, or what became of the connections):")
    for f in floods:
        print(f"  {f.name:<10} {dict(sorted(f.answers.items()))}")
    print()
    print(f"gateway at the end of the hostile phase: RSS {stats['rss_mb']} MB, {stats['fds']} descriptors, "
          f"{stats['children']} child processes")
    _, q_rate, q50, q99 = res["quiet"]
    _, h_rate, h50, h99 = res["hostile"]
    verdict = []
    if h_rate < 99.0:
        verdict.append(f"success {h_rate:.2f} % < 99 %")
    if h50 > 2 * max(q50, LAT_FLOOR_US):
        verdict.append(f"p50 {h50 / 1000:.2f} ms > 2 × {max(q50, LAT_FLOOR_US) / 1000:.2f} ms")
    if h99 > 2 * max(q99, LAT_FLOOR_US):
        verdict.append(f"p99 {h99 / 1000:.2f} ms > 2 × {max(q99, LAT_FLOOR_US) / 1000:.2f} ms")
    print()
    if verdict:
        print("hostile: FAILED: " + "; ".join(verdict))
        return 1
    print("hostile: the well-behaved caller kept ≥ 99 % success and its latency within 2 × quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
