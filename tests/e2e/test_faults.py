"""Faults with real processes: what callers see and what the ledger holds when things break.

- the upstream is SIGKILLed in the middle of a streamed (SSE) call: the caller's stream ends with
  an error instead of hanging, the prepaid debit for the cut call is refunded, later calls get a
  502 / -31502 at once and are refunded too, and the gateway's open descriptors come back down;
- the gateway is SIGKILLed with calls in flight and started again on the same SQLite file: every
  call the upstream received was debited, no ledger row is lost or written twice, the spent total
  equals debits minus refunds, a per-call token used before the crash is still refused after it,
  and the prepaid balance keeps working;
- the Lightning node hangs, answers 500, or answers garbage: callers get 503 / -31503 within the
  backend timeout, nothing is written to the ledger, a credential whose settlement could not be
  checked is not consumed and passes once the node answers again.

Redis and PostgreSQL going away and coming back are covered by their own tests
(crates/turnpike-store/tests/redis_spent_set.rs, crates/turnpike-limits/tests/backends.rs,
crates/turnpike-gateway/tests/limits_gateway.rs and the PostgreSQL store's tests).

Waiting is on conditions (a row appears, a port answers); the only clocks are generous hang
guards, so a slow machine makes these tests slower, not flaky.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from turnpike_e2e import ACCEPT, FIXTURE, TURNPIKE, Proc, require_file, start_fixture_http, toml_str, wait_until

HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}
DEV_KEY = "22" * 32
PRICE = 1000
# A hang guard, not a measurement: a call that has not ended by then has hung.
HANG_GUARD = 60.0


def tool_call(rid: int, name: str, args: dict, progress: bool = False) -> dict:
    params: dict = {"name": name, "arguments": args}
    if progress:
        params["_meta"] = {"progressToken": f"p{rid}"}
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def spawn_gateway(name: str, config: Path, work: Path) -> Proc:
    return Proc(name, [str(TURNPIKE), "serve", "--config", str(config)], work / f"{name}.log")


def db_rows(data_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(data_dir / "l402.sqlite", timeout=30) as db:
        return db.execute(sql, args).fetchall()


def ledger(data_dir: Path) -> list[tuple]:
    return db_rows(data_dir, "SELECT id, kind, amount_msat, reference FROM l402_ledger ORDER BY id")


def check_ledger(data_dir: Path) -> dict:
    """Ledger integrity: unique ids, refunds name distinct debits of the same amount, and every
    balance's spent total equals its debits minus its refunds. Returns counts by kind.

    Everything is read in one read transaction (a WAL snapshot), so a debit or refund the gateway
    commits meanwhile is seen whole or not at all."""
    db = sqlite3.connect(data_dir / "l402.sqlite", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN")
        return _check_ledger(lambda sql, args=(): db.execute(sql, args).fetchall())
    finally:
        db.close()


def _check_ledger(q) -> dict:
    rows = q("SELECT id, kind, amount_msat, reference FROM l402_ledger ORDER BY id")
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a ledger row id appears twice"
    debits = {r[0]: r[2] for r in rows if r[1] == "debit"}
    refunds = [(int(r[3]), r[2]) for r in rows if r[1] == "refund"]
    refunded_ids = [d for d, _ in refunds]
    assert len(refunded_ids) == len(set(refunded_ids)), "a debit was refunded twice"
    for d, amount in refunds:
        assert debits.get(d) == amount, f"refund of unknown debit {d}"
    for token_id, credit, spent in q("SELECT token_id, credit_msat, spent_msat FROM l402_balances"):
        tok_debits = q("SELECT id, amount_msat, refunded FROM l402_debits WHERE token_id = ?", (token_id,))
        net = sum(a for _, a, refunded in tok_debits if not refunded)
        assert spent == net, f"spent {spent} but debits minus refunds are {net}"
        assert 0 <= spent <= credit, f"balance out of range: spent {spent} of {credit}"
        for debit_id, amount, refunded in tok_debits:
            assert debits.get(debit_id) == amount, f"debit {debit_id} has no ledger row"
            assert bool(refunded) == (debit_id in refunded_ids), f"debit {debit_id} refund flag vs ledger"
    counts: dict = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    return counts


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def buy(url: str, wallet: dict, tool: str, args: dict) -> str:
    """Gets the L402 challenge for a call, pays it through the dev wallet; the Authorization."""
    r = httpx.post(url, json=tool_call(1, tool, args), headers=HEADERS, timeout=30)
    assert r.status_code == 402, r.text
    line = r.headers.get_list("www-authenticate")[0]
    mac = line.split('macaroon="', 1)[1].split('"', 1)[0]
    inv = line.split('invoice="', 1)[1].split('"', 1)[0]
    p = httpx.post(f"{wallet['url']}/v1/channels/transactions", json={"payment_request": inv},
                   headers={"Grpc-Metadata-macaroon": wallet["macaroon_hex"]}, timeout=30)
    assert p.status_code == 200 and p.json()["payment_error"] == "", p.text
    preimage = base64.b64decode(p.json()["payment_preimage"]).hex()
    return f"L402 {mac}:{preimage}"


def dev_config(port: int, data_dir: Path, upstream: str, tools: str) -> str:
    return "\n".join([
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        'path = "/mcp"',
        'challenge_mode = "http"',
        f"data_dir = {toml_str(str(data_dir))}",
        "",
        "[upstream]",
        f"url = {toml_str(upstream)}",
        "",
        tools,
        "",
        "[l402]",
        'store = "sqlite"',
        "",
        "[lightning]",
        'backend = "dev"',
        f"key_hex = {toml_str(DEV_KEY)}",
        "[lightning.dev_wallet]",
        'listen = "127.0.0.1:0"',
        "",
    ])


def start(name: str, work: Path, config_text: str) -> tuple[Proc, Path, int]:
    """A gateway on the config (which listens on port 0); with the port it bound."""
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    config = work / f"{name}.toml"
    config.write_text(config_text)
    proc = spawn_gateway(name, config, work)
    return proc, config, proc.reported_port("gateway")


def wallet_of(data_dir: Path) -> dict:
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 30, "the dev wallet")
    return json.loads((data_dir / "dev-wallet.json").read_text())


# ---------------------------------------------------------------------------------------------
# 1. The upstream dies in the middle of a stream
# ---------------------------------------------------------------------------------------------


def test_upstream_killed_mid_stream(work: Path) -> None:
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    # Stateless with SSE answers: `slow` streams its progress notifications.
    fixture, up_port = start_fixture_http(work, "faults-fixture", "--stateless")
    data_dir = work / "faults-midstream-data"
    tools = f'[tools.slow]\nl402 = {{ msat = {PRICE}, mode = "balance", bundle = {20 * PRICE} }}'
    gw, _, port = start("faults-midstream", work,
                        dev_config(0, data_dir, f"http://127.0.0.1:{up_port}/mcp", tools))
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        auth = {"Authorization": buy(url, wallet_of(data_dir), "slow", {}), **HEADERS}
        # A short paid call first, so that pools and buffers exist before the baseline.
        r = httpx.post(url, json=tool_call(2, "slow", {"steps": 1, "delay_ms": 1}), headers=auth, timeout=30)
        assert r.status_code == 200 and '"done"' in r.text, r.text
        baseline_fds = open_fds(gw.popen.pid)

        events: list[str] = []
        error: list[BaseException] = []
        started = time.monotonic()
        with httpx.Client(timeout=httpx.Timeout(HANG_GUARD)) as client:
            with client.stream("POST", url, json=tool_call(3, "slow", {"steps": 200, "delay_ms": 100}, progress=True),
                               headers=auth) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                try:
                    for line in resp.iter_lines():
                        if line.startswith("data:"):
                            events.append(line)
                            if len(events) == 1:
                                # The first progress event arrived: the call is running upstream.
                                os.killpg(fixture.popen.pid, signal.SIGKILL)
                except httpx.HTTPError as e:
                    error.append(e)
        elapsed = time.monotonic() - started
        assert elapsed < HANG_GUARD, "the caller's stream hung after the upstream died"
        assert events and "notifications/progress" in events[0]
        assert not any('"result"' in e for e in events), "a result after the upstream was killed?"
        # The stream was cut, and the caller can tell: an error (incomplete chunked body) rather
        # than a clean end of a stream that simply lacks the response.
        assert error, "the cut stream ended as if it were complete"

        # The debit of the cut call is refunded (the caller never got an answer).
        wait_until(lambda: check_ledger(data_dir).get("refund", 0) == 1, 30, "the refund of the cut call")
        # With the upstream gone, a new call fails fast with a clear error, and is refunded too.
        r = httpx.post(url, json=tool_call(4, "slow", {"steps": 1, "delay_ms": 1}), headers=auth, timeout=HANG_GUARD)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == -31502
        counts = check_ledger(data_dir)
        assert counts == {"payment": 1, "debit": 3, "refund": 2}, counts
        assert db_rows(data_dir, "SELECT spent_msat FROM l402_balances") == [(PRICE,)]
        # Nothing is left open for the dead stream (the client connections are closed).
        wait_until(lambda: open_fds(gw.popen.pid) <= baseline_fds, 30,
                   f"descriptors back to {baseline_fds} (now {open_fds(gw.popen.pid)})")
    finally:
        gw.stop()
        fixture.stop()


# ---------------------------------------------------------------------------------------------
# 2. The gateway dies with calls in flight, and comes back
# ---------------------------------------------------------------------------------------------


class HeldUpstream:
    """An MCP upstream (JSON answers, no sessions) in this process that holds every `tools/call`
    until released, and counts the calls it received: calls are in flight for as long as the
    test wants, with no timing involved."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                if body.get("method") == "tools/call":
                    with outer.lock:
                        outer.calls.append(body)
                    outer.release.wait(HANG_GUARD)
                    answer = {"jsonrpc": "2.0", "id": body["id"],
                              "result": {"content": [{"type": "text", "text": "held"}]}}
                elif "id" in body:
                    answer = {"jsonrpc": "2.0", "id": body["id"], "result": {}}
                else:
                    self.send_response(202)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                data = json.dumps(answer).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the gateway that asked is gone

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/mcp"

    def count(self) -> int:
        with self.lock:
            return len(self.calls)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_gateway_sigkilled_with_calls_in_flight_then_restarted(work: Path) -> None:
    upstream = HeldUpstream()
    data_dir = work / "faults-sigkill-data"
    tools = "\n".join([
        f'[tools.work]\nl402 = {{ msat = {PRICE}, mode = "balance", bundle = {50 * PRICE} }}',
        f"[tools.once]\nl402 = {{ msat = {PRICE} }}",
    ])
    text = dev_config(0, data_dir, upstream.url, tools)
    gw, config, port = start("faults-sigkill", work, text)
    url = f"http://127.0.0.1:{port}/mcp"
    in_flight = 6
    try:
        wallet = wallet_of(data_dir)
        balance = {"Authorization": buy(url, wallet, "work", {}), **HEADERS}
        once = {"Authorization": buy(url, wallet, "once", {}), **HEADERS}
        upstream.release.set()
        r = httpx.post(url, json=tool_call(2, "once", {}), headers=once, timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.post(url, json=tool_call(3, "work", {}), headers=balance, timeout=30)
        assert r.status_code == 200, r.text
        upstream.release.clear()
        assert upstream.count() == 2

        # Calls in flight: each one debited and held by the upstream.
        outcomes: list[object] = []

        def call(i: int) -> None:
            try:
                outcomes.append(httpx.post(url, json=tool_call(100 + i, "work", {"i": i}), headers=balance,
                                           timeout=HANG_GUARD).status_code)
            except httpx.HTTPError as e:
                outcomes.append(e)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(in_flight)]
        for t in threads:
            t.start()
        wait_until(lambda: upstream.count() == 2 + in_flight, HANG_GUARD, "every call held upstream")

        os.killpg(gw.popen.pid, signal.SIGKILL)
        gw.popen.wait(timeout=30)
        for t in threads:
            t.join(HANG_GUARD)
        assert len(outcomes) == in_flight
        assert all(isinstance(o, httpx.HTTPError) for o in outcomes), \
            f"callers of the killed gateway must see an error, not an answer: {outcomes}"
        upstream.release.set()

        # The file as the crash left it: every call the upstream received was debited first, and
        # the rows agree with the balances.
        counts = check_ledger(data_dir)
        balance_debits = db_rows(data_dir, "SELECT COUNT(*) FROM l402_debits")[0][0]
        assert balance_debits == 1 + in_flight, f"{balance_debits} debits for {1 + in_flight} balance calls upstream"
        assert counts == {"payment": 2, "debit": 1 + in_flight}, counts

        # Restarted on the same file (on a port of its own: the tokens are not bound to one).
        gw.stop()
        gw = spawn_gateway("faults-sigkill-2", config, work)
        url = f"http://127.0.0.1:{gw.reported_port('gateway')}/mcp"
        assert check_ledger(data_dir) == counts, "the restart changed the ledger"

        # A per-call token used before the crash is still used.
        r = httpx.post(url, json=tool_call(4, "once", {}), headers=once, timeout=30)
        assert r.status_code == 402, r.text
        assert any("already used" in x["reason"] for x in r.json()["error"]["data"].get("refusals", [])), r.text
        # The balance keeps working, one debit per call.
        spent_before = db_rows(data_dir, "SELECT spent_msat FROM l402_balances")[0][0]
        r = httpx.post(url, json=tool_call(5, "work", {}), headers=balance, timeout=30)
        assert r.status_code == 200, r.text
        assert db_rows(data_dir, "SELECT spent_msat FROM l402_balances")[0][0] == spent_before + PRICE
        counts = check_ledger(data_dir)
        # The refused replay came with a fresh challenge, which writes nothing (a 402 is no row).
        assert counts == {"payment": 2, "debit": 2 + in_flight}, counts
        assert upstream.count() == 3 + in_flight, "no call reached the upstream without a debit"
    finally:
        gw.stop()
        upstream.close()


# ---------------------------------------------------------------------------------------------
# 3. The Lightning node hangs or fails
# ---------------------------------------------------------------------------------------------


class FakeLnd:
    """An LND REST node on loopback that mints real signed regtest invoices (the `bolt11`
    package, with coincurve) and can be told to hang, fail with 500, or answer garbage, for
    invoice creation and lookups separately."""

    KEY = "33" * 32

    def __init__(self) -> None:
        import bolt11  # a test peer (tests/e2e/requirements.txt)

        self.bolt11 = bolt11
        self.create_mode = "ok"
        self.lookup_mode = "ok"
        self.invoices: dict[str, dict] = {}  # payment hash hex -> {"preimage", "settled"}
        self.hung = threading.Event()
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def misbehave(self, mode: str) -> bool:
                if mode == "hang":
                    outer.hung.set()
                    outer.stop.wait(HANG_GUARD)
                    return True
                if mode == "error":
                    self.reply(500, {"error": "internal", "code": 2})
                    return True
                if mode == "garbage":
                    self.reply(200, b"{\"r_hash\": 12, \"payment_request\": [")
                    return True
                return False

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                if self.path != "/v1/invoices" or self.misbehave(outer.create_mode):
                    if self.path != "/v1/invoices":
                        self.reply(404, {})
                    return
                self.reply(200, outer.mint(int(body["value_msat"]), body.get("memo", "")))

            def do_GET(self) -> None:
                if not self.path.startswith("/v1/invoice/"):
                    self.reply(404, {})
                    return
                if self.misbehave(outer.lookup_mode):
                    return
                h = self.path.rsplit("/", 1)[1]
                inv = outer.invoices.get(h)
                if inv is None:
                    self.reply(404, {"error": "unable to locate invoice", "code": 5})
                    return
                out = {"state": "SETTLED" if inv["settled"] else "OPEN"}
                if inv["settled"]:
                    out["r_preimage"] = base64.b64encode(inv["preimage"]).decode()
                self.reply(200, out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mint(self, msat: int, memo: str) -> dict:
        b = self.bolt11
        preimage = os.urandom(32)
        ph = hashlib.sha256(preimage).hexdigest()
        tags = b.Tags.from_dict({"p": ph, "d": memo or "turnpike", "s": os.urandom(32).hex(), "x": 600})
        inv = b.Bolt11(currency="bcrt", date=int(time.time()), tags=tags, amount_msat=b.MilliSatoshi(msat))
        self.invoices[ph] = {"preimage": preimage, "settled": False}
        return {"r_hash": base64.b64encode(bytes.fromhex(ph)).decode(),
                "payment_request": b.encode(inv, self.KEY), "add_index": str(len(self.invoices))}

    def pay(self, invoice: str) -> str:
        ph = self.bolt11.decode(invoice).payment_hash
        self.invoices[ph]["settled"] = True
        return self.invoices[ph]["preimage"].hex()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def lnd_gateway(work: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeLnd, Path]]:
    lnd = FakeLnd()
    upstream = HeldUpstream()
    upstream.release.set()
    name = "faults-" + "".join(c if c.isalnum() else "-" for c in request.node.name)
    data_dir = work / f"{name}-data"
    text = "\n".join([
        "[server]",
        'listen = "127.0.0.1:0"',
        'path = "/mcp"',
        'challenge_mode = "http"',
        f"data_dir = {toml_str(str(data_dir))}",
        "",
        "[upstream]",
        f"url = {toml_str(upstream.url)}",
        "",
        f"[tools.paid]\nl402 = {{ msat = {PRICE} }}",
        "",
        "[l402]",
        'store = "sqlite"',
        'confirm_settlement = "always"',
        "",
        "[lightning]",
        'backend = "lnd"',
        f"url = {toml_str(lnd.url)}",
        f"macaroon_hex = {toml_str('ab' * 16)}",
        "timeout_secs = 2",
        "lookup_retries = 0",
        "",
    ])
    gw, _, port = start(name, work, text)
    try:
        yield f"http://127.0.0.1:{port}/mcp", lnd, data_dir
    finally:
        gw.stop()
        lnd.close()
        upstream.close()


def ledger_rows(data_dir: Path) -> int:
    if not (data_dir / "l402.sqlite").exists():
        return 0
    return db_rows(data_dir, "SELECT COUNT(*) FROM l402_ledger")[0][0]


@pytest.mark.parametrize("mode", ["hang", "error", "garbage"])
def test_lightning_create_fails_closed(lnd_gateway: tuple[str, FakeLnd, Path], mode: str) -> None:
    url, lnd, data_dir = lnd_gateway
    lnd.create_mode = mode
    started = time.monotonic()
    r = httpx.post(url, json=tool_call(1, "paid", {}), headers=HEADERS, timeout=HANG_GUARD)
    elapsed = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == -31503, r.text
    assert elapsed < HANG_GUARD
    assert ledger_rows(data_dir) == 0, "a failed invoice left a ledger row"
    if mode == "hang":
        assert lnd.hung.is_set()


@pytest.mark.parametrize("mode", ["hang", "error"])
def test_lightning_lookup_failure_consumes_nothing(lnd_gateway: tuple[str, FakeLnd, Path], mode: str) -> None:
    url, lnd, data_dir = lnd_gateway
    r = httpx.post(url, json=tool_call(1, "paid", {}), headers=HEADERS, timeout=HANG_GUARD)
    assert r.status_code == 402, r.text
    line = r.headers.get_list("www-authenticate")[0]
    mac = line.split('macaroon="', 1)[1].split('"', 1)[0]
    inv = line.split('invoice="', 1)[1].split('"', 1)[0]
    auth = {"Authorization": f"L402 {mac}:{lnd.pay(inv)}", **HEADERS}
    rows_before = ledger_rows(data_dir)

    lnd.lookup_mode = mode
    r = httpx.post(url, json=tool_call(2, "paid", {}), headers=auth, timeout=HANG_GUARD)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == -31503
    assert ledger_rows(data_dir) == rows_before, "a failed settlement check wrote to the ledger"
    assert db_rows(data_dir, "SELECT paid_at FROM l402_tokens") == [], "no row before the payment is seen"

    # The node answers again: the same credential passes, once.
    lnd.lookup_mode = "ok"
    r = httpx.post(url, json=tool_call(3, "paid", {}), headers=auth, timeout=HANG_GUARD)
    assert r.status_code == 200, r.text
    assert check_ledger(data_dir) == {"payment": 1}
    r = httpx.post(url, json=tool_call(4, "paid", {}), headers=auth, timeout=HANG_GUARD)
    assert r.status_code == 402, "a per-call token passes once"
