"""What the operator sees, end to end, against `turnpike serve` in front of the fixture server
with the proof-of-work and L402 rails (dev Lightning backend) and the admin listener on:

- `/metrics` numbers move as calls happen;
- the JSON log has one line per call with a request id and the trace context, and holds no
  secret (PoW solution, macaroon, preimage, admin token) after calls through every rail;
- the admin API: figures, ledger export (CSV, JSON lines), balance adjustment, revocation;
- reload on SIGHUP and on file change under load drops no call; bad configurations are refused;
- shutdown under load: every call answered 200 has its ledger row;
- `turnpike init` writes a file `turnpike check` passes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
import signal
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from turnpike_e2e import (
    ACCEPT,
    FIXTURE,
    TURNPIKE,
    Proc,
    authorization,
    pow_challenges,
    py_solve,
    require_file,
    start_fixture_http,
    toml_str,
    wait_until,
)

HEADERS = {"Accept": ACCEPT, "Content-Type": "application/json"}
DEV_KEY = "22" * 32
ADD_EFFORT = 4000
ADD_MSAT = 1000
ECHO_MSAT = 1000
ECHO_BUNDLE = 2_000_000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
META_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def ops_config(port: int, admin_port: int, data_dir: Path, upstream: str, token: str,
               add_effort: int = ADD_EFFORT, extra: str = "") -> str:
    return "\n".join([
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f"data_dir = {toml_str(str(data_dir))}",
        'challenge_mode = "http"',
        "shutdown_timeout_secs = 20",
        "",
        "[upstream]",
        f"url = {toml_str(upstream)}",
        "",
        "[pow]",
        "subpuzzles = 2",
        "",
        "[tools.add]",
        f"pow = {add_effort}",
        f"l402 = {{ msat = {ADD_MSAT} }}",
        "[tools.echo]",
        f'l402 = {{ msat = {ECHO_MSAT}, mode = "balance", bundle = {ECHO_BUNDLE} }}',
        "[tools.whoami]",
        "free = true",
        "[tools.slow]",
        "free = true",
        "",
        "[limits]",
        "enabled = false",
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
        "[admin]",
        f'listen = "127.0.0.1:{admin_port}"',
        f"token = {toml_str(token)}",
        extra,
        "",
    ])


@dataclass
class OpsGateway:
    proc: Proc
    port: int
    admin_port: int
    config_path: Path
    data_dir: Path
    token: str
    upstream: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def write_config(self, **kw) -> None:
        # Port 0 as at start: the listen addresses stay what the running gateway was given.
        self.config_path.write_text(ops_config(0, 0, self.data_dir,
                                               self.upstream, self.token, **kw))

    def metrics(self) -> dict[str, float]:
        r = httpx.get(f"{self.admin}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(r.text)

    def wallet(self) -> dict:
        return json.loads((self.data_dir / "dev-wallet.json").read_text())

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "l402.sqlite")


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
    return out


def start_ops(work: Path, name: str) -> tuple[OpsGateway, Proc]:
    require_file(FIXTURE, "build the workspace: cargo build --workspace")
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    up, up_port = start_fixture_http(work, f"{name}-fixture", "--stateless", "--json")
    data_dir = work / f"{name}-data"
    config_path = work / f"{name}.toml"
    token = "adm-" + secrets.token_hex(16)
    upstream = f"http://127.0.0.1:{up_port}/mcp"
    config_path.write_text(ops_config(0, 0, data_dir, upstream, token))
    log_path = work / f"{name}.log"
    proc = Proc(name, [str(TURNPIKE), "--log-format", "json", "serve", "--config", str(config_path)],
                log_path)
    port = proc.reported_port("gateway")
    admin_port = proc.reported_port("admin")
    wait_until(lambda: (data_dir / "dev-wallet.json").exists(), 10, "dev wallet")
    return OpsGateway(proc, port, admin_port, config_path, data_dir, token, upstream, log_path), up


@pytest.fixture()
def ops(work: Path, request: pytest.FixtureRequest) -> Iterator[OpsGateway]:
    gw, up = start_ops(work, f"ops-{request.node.name}")
    yield gw
    gw.proc.stop()
    up.stop()


def call(rid: int, name: str, args: dict, meta: dict | None = None) -> dict:
    params: dict = {"name": name, "arguments": args}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def ok_text(r: httpx.Response) -> str:
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:300]}"
    body = r.json()
    assert "result" in body and body["result"].get("isError") is not True, body
    return body["result"]["content"][0]["text"]


def l402_challenge(r: httpx.Response) -> tuple[str, str]:
    """(macaroon, invoice) from a 402's L402 WWW-Authenticate line."""
    for v in r.headers.get_list("www-authenticate"):
        if v.startswith("L402 "):
            mac = re.search(r'macaroon="([^"]+)"', v).group(1)
            inv = re.search(r'invoice="([^"]+)"', v).group(1)
            return mac, inv
    raise AssertionError(f"no L402 challenge in {r.headers}")


def dev_pay(gw: OpsGateway, invoice: str) -> str:
    w = gw.wallet()
    r = httpx.post(f"{w['url']}/v1/channels/transactions", json={"payment_request": invoice},
                   headers={"Grpc-Metadata-macaroon": w["macaroon_hex"]}, timeout=10)
    assert r.status_code == 200, r.text
    return base64.b64decode(r.json()["payment_preimage"]).hex()


@dataclass
class Secrets:
    values: list[str]


def run_every_rail(gw: OpsGateway, c: httpx.Client) -> Secrets:
    """A challenge, a puzzle solved, a per-call L402 payment, a balance bought and used, a free
    call; returns every secret the client sent."""
    sent: list[str] = []
    # Proof-of-work: challenged, then solved.
    r = c.post(gw.url, json=call(1, "add", {"a": 1, "b": 2}), headers=HEADERS)
    assert r.status_code == 402, r.text
    token = re.search(r'challenge="([^"]+)"', pow_challenges(r)[0]).group(1)
    auth = authorization(token, py_solve(token))
    sent.append(auth.split(" ", 1)[1])
    assert ok_text(c.post(gw.url, json=call(2, "add", {"a": 1, "b": 2}),
                          headers={**HEADERS, "Authorization": auth})) == "3"
    # L402 per call.
    r = c.post(gw.url, json=call(3, "add", {"a": 2, "b": 2}), headers=HEADERS)
    mac, inv = l402_challenge(r)
    pre = dev_pay(gw, inv)
    sent += [mac, pre, inv]
    assert ok_text(c.post(gw.url, json=call(4, "add", {"a": 2, "b": 2}),
                          headers={**HEADERS, "Authorization": f"L402 {mac}:{pre}"})) == "4"
    # L402 balance, the credential in _meta this time.
    r = c.post(gw.url, json=call(5, "echo", {"text": "x"}), headers=HEADERS)
    mac2, inv2 = l402_challenge(r)
    pre2 = dev_pay(gw, inv2)
    sent += [mac2, pre2, inv2]
    meta = {"turnpike/l402": {"macaroon": mac2, "preimage": pre2}}
    for i in range(2):
        assert ok_text(c.post(gw.url, json=call(6 + i, "echo", {"text": "hi"}, meta=meta),
                              headers=HEADERS)) == "hi"
    # Free, with trace context in the header and in _meta.
    ok_text(c.post(gw.url, json=call(8, "whoami", {}),
                   headers={**HEADERS, "traceparent": TRACEPARENT, "X-Request-Id": "req-abc-1"}))
    ok_text(c.post(gw.url, json=call(9, "whoami", {}, meta={"traceparent": META_TRACEPARENT}),
                   headers=HEADERS))
    return Secrets(sent + [gw.token])


def test_metrics_move_as_calls_happen(ops: OpsGateway) -> None:
    before = ops.metrics()
    with httpx.Client(timeout=30) as c:
        run_every_rail(ops, c)
    after = ops.metrics()

    def d(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    calls = 'turnpike_calls_total{method="tools/call",tool="%s",rail="%s",outcome="%s"}'
    assert d(calls % ("add", "pow", "passed")) == 1
    assert d(calls % ("add", "l402", "passed")) == 1
    assert d(calls % ("echo", "l402", "passed")) == 2
    assert d(calls % ("whoami", "none", "passed")) == 2
    assert d(calls % ("add", "none", "challenged")) == 2
    assert d(calls % ("echo", "none", "challenged")) == 1
    assert d("turnpike_pow_puzzles_issued_total") >= 2
    assert d("turnpike_pow_puzzles_solved_total") == 1
    assert after["turnpike_pow_effort"] >= ADD_EFFORT
    assert d("turnpike_l402_invoices_total") >= 3
    assert d("turnpike_l402_invoiced_sats_total") >= (ADD_MSAT * 2 + ECHO_BUNDLE) / 1000
    assert d("turnpike_l402_settled_sats_total") == (ADD_MSAT + 2 * ECHO_MSAT) / 1000
    assert d('turnpike_gateway_duration_seconds_count{rail="pow"}') == 1
    assert d("turnpike_upstream_duration_seconds_count") == 6
    assert after['turnpike_rail_up{rail="l402"}'] == 1
    assert after['turnpike_backend_up{backend="l402_store"}'] == 1
    assert 'turnpike_limit_hits_total{source="gateway"}' in after
    # No identity ever becomes a label.
    text = httpx.get(f"{ops.admin}/metrics").text
    assert "127.0.0.1" not in text


def test_logs_carry_request_ids_and_trace_context_but_no_secret(ops: OpsGateway) -> None:
    with httpx.Client(timeout=30) as c:
        s = run_every_rail(ops, c)
        # The request id and trace context reach the upstream (whoami echoes its headers).
        r = c.post(ops.url, json=call(20, "whoami", {}, meta={"traceparent": META_TRACEPARENT}),
                   headers={**HEADERS, "X-Request-Id": "req-xyz-2"})
        assert r.headers["x-request-id"] == "req-xyz-2"
        seen = ok_text(r)
        assert "req-xyz-2" in seen and META_TRACEPARENT in seen, seen
        # The admin API with its token, and a wrong token.
        assert httpx.get(f"{ops.admin}/admin/api/summary", headers=ops.auth()).status_code == 200
        assert httpx.get(f"{ops.admin}/admin/api/summary",
                         headers={"Authorization": "Bearer " + ops.token[:-1] + "0"}).status_code == 401
    ops.proc.stop()
    log = ops.log_path.read_text()
    lines = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    call_lines = [l for l in lines if l.get("target") == "turnpike::call"]
    assert len(call_lines) >= 10
    assert all(re.fullmatch(r"[0-9a-f]{32}|req-[a-z0-9-]+", l["request_id"]) for l in call_lines)
    assert len({l["request_id"] for l in call_lines}) == len(call_lines), "request ids repeat"
    by_id = {l["request_id"]: l for l in call_lines}
    assert by_id["req-abc-1"]["trace_id"] == TRACEPARENT.split("-")[1]
    assert by_id["req-abc-1"]["parent_id"] == TRACEPARENT.split("-")[2]
    assert by_id["req-xyz-2"]["trace_id"] == META_TRACEPARENT.split("-")[1]
    rails = {l["rail"] for l in call_lines}
    assert {"pow", "l402"} <= rails
    for secret in s.values:
        assert secret and secret not in log, f"a secret ({secret[:12]}…) is in the log"
        # Pieces long enough to identify one, too (a macaroon's base64 body, say).
        for piece in re.findall(r"[A-Za-z0-9+/=_-]{24,}", secret):
            assert piece not in log, f"part of a secret ({piece[:12]}…) is in the log"


def test_admin_api_figures_ledger_adjust_revoke(ops: OpsGateway) -> None:
    assert httpx.get(f"{ops.admin}/admin/api/summary").status_code == 401
    with httpx.Client(timeout=30) as c:
        run_every_rail(ops, c)
        r = httpx.get(f"{ops.admin}/admin/api/summary", headers=ops.auth())
        assert r.status_code == 200
        s = r.json()
        assert s["totals"]["passed"] >= 6 and s["totals"]["challenged"] >= 3
        assert {"pow", "l402"} <= set(s["rails"])
        assert {t["tool"] for t in s["top_tools"]} >= {"add", "echo", "whoami"}
        assert any(x["kind"] == "l402" for x in s["top_callers"])
        assert all(x["label"].startswith("anon-") for x in s["top_callers"] if x["kind"] == "anonymous")
        # Money that moved only: an invoice that was offered is not a ledger row.
        kinds = {e["kind"] for e in s["ledger"]}
        assert kinds >= {"payment", "debit"} and "invoice" not in kinds, kinds
        assert len(s["history"]) >= 1

        # Ledger export: JSON lines and CSV agree with the database.
        jl = httpx.get(f"{ops.admin}/admin/api/ledger?format=jsonl", headers=ops.auth())
        assert jl.status_code == 200
        rows = [json.loads(l) for l in jl.text.splitlines()]
        with ops.db() as db:
            n = db.execute("SELECT COUNT(*) FROM l402_ledger").fetchone()[0]
        assert len(rows) == n and [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        cs = httpx.get(f"{ops.admin}/admin/api/ledger?format=csv&after={rows[0]['id']}",
                       headers=ops.auth())
        table = list(csv.DictReader(io.StringIO(cs.text)))
        assert len(table) == n - 1 and table[0]["id"] == str(rows[1]["id"])

        # Adjust the balance token's credit: logged in the ledger.
        balance_token = next(r["token_id"] for r in rows if r["kind"] == "debit")
        adj = httpx.post(f"{ops.admin}/admin/api/balances/{balance_token}/adjust",
                         json={"delta_msat": 5000, "note": "goodwill"}, headers=ops.auth())
        assert adj.status_code == 200, adj.text
        assert adj.json()["credit_msat"] == ECHO_BUNDLE + 5000
        too_much = httpx.post(f"{ops.admin}/admin/api/balances/{balance_token}/adjust",
                              json={"delta_msat": -10 * ECHO_BUNDLE}, headers=ops.auth())
        assert too_much.status_code == 409
        with ops.db() as db:
            row = db.execute("SELECT amount_msat, reference FROM l402_ledger WHERE kind='adjustment'").fetchall()
        assert row == [(5000, "+5000 goodwill")]

        # Revoke it: the next call with it is refused.
        r = c.post(ops.url, json=call(30, "echo", {"text": "a"}), headers=HEADERS)
        mac, inv = l402_challenge(r)
        pre = dev_pay(ops, inv)
        meta = {"turnpike/l402": {"macaroon": mac, "preimage": pre}}
        ok_text(c.post(ops.url, json=call(31, "echo", {"text": "a"}, meta=meta), headers=HEADERS))
        with ops.db() as db:
            tid = db.execute("SELECT hex(token_id) FROM l402_ledger ORDER BY id DESC LIMIT 1").fetchone()[0].lower()
        rv = httpx.post(f"{ops.admin}/admin/api/tokens/{tid}/revoke", headers=ops.auth())
        assert rv.status_code == 200 and rv.json() == {"revoked": True}
        r = c.post(ops.url, json=call(32, "echo", {"text": "a"}, meta=meta), headers=HEADERS)
        assert r.status_code == 402, r.text
        assert httpx.post(f"{ops.admin}/admin/api/tokens/zz/revoke", headers=ops.auth()).status_code == 400
        # A token never used yet (no row) is revoked too: it will be refused when it comes.
        assert httpx.post(f"{ops.admin}/admin/api/tokens/{'00' * 32}/revoke",
                          headers=ops.auth()).status_code == 200


def _load(url: str, stop: threading.Event, results: list, slow: bool) -> None:
    with httpx.Client(timeout=30) as c:
        i = 0
        while not stop.is_set():
            i += 1
            body = call(i, "slow", {"steps": 3, "delay_ms": 60}) if slow else call(i, "whoami", {})
            try:
                r = c.post(url, json=body, headers=HEADERS)
                results.append(r.status_code == 200 and "result" in r.json())
            except Exception as e:  # noqa: BLE001 - any failure is a dropped call
                results.append(repr(e))


def test_reload_under_load_drops_nothing_and_refuses_bad_configs(ops: OpsGateway) -> None:
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=_load, args=(ops.url, stop, results, i % 2 == 0))
               for i in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(results) >= 8, 30, "load to start")
        base = ops.metrics()

        def applied() -> float:
            return ops.metrics()['turnpike_config_reloads_total{result="applied"}']

        def refused() -> float:
            return ops.metrics()['turnpike_config_reloads_total{result="refused"}']

        # 1. A new price, on SIGHUP.
        ops.write_config(add_effort=9000)
        ops.proc.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: applied() >= base['turnpike_config_reloads_total{result="applied"}'] + 1,
                   20, "the reload")
        r = httpx.post(ops.url, json=call(1, "add", {"a": 1, "b": 1}), headers=HEADERS)
        assert r.status_code == 402
        assert any('effort="9000"' in v or "effort=\"9" in v for v in r.headers.get_list("www-authenticate")), \
            r.headers.get_list("www-authenticate")
        n_ok = applied()
        # 2. A file that does not parse: refused, the old configuration stays.
        ops.config_path.write_text(ops.config_path.read_text() + "\n[tools.broken\n")
        ops.proc.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() >= 1, 20, "the refusal")
        # 3. A change that needs a restart (the upstream): refused.
        text = ops.config_path.read_text().replace("\n[tools.broken\n", "\n")
        ops.config_path.write_text(text.replace(ops.upstream, "http://127.0.0.1:9/mcp"))
        ops.proc.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: refused() >= 2, 20, "the second refusal")
        assert applied() == n_ok
        # 4. A change to the file alone (no signal): picked up by the watcher.
        ops.write_config(add_effort=7000)
        wait_until(lambda: applied() >= n_ok + 1, 20, "the file watcher")
        r = httpx.post(ops.url, json=call(2, "add", {"a": 1, "b": 1}), headers=HEADERS)
        assert any('effort="7000"' in v or 'effort="7' in v for v in r.headers.get_list("www-authenticate"))
        wait_until(lambda: len(results) >= 40, 60, "more load after the reloads")
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = [r for r in results if r is not True]
    assert not bad, f"{len(bad)} of {len(results)} calls failed across reloads: {bad[:3]}"
    log = ops.log_path.read_text()
    assert "new configuration refused" in log and "need a restart: [upstream]" in log


def _paid_echo(url: str, meta: dict, stop: threading.Event, oks: list, errors: list) -> None:
    with httpx.Client(timeout=30) as c:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.post(url, json=call(i, "echo", {"text": "s"}, meta=meta), headers=HEADERS)
            except Exception as e:  # noqa: BLE001 - the listener has closed
                errors.append(repr(e))
                return
            if r.status_code == 200 and "result" in r.json():
                oks.append(1)
            else:
                errors.append(r.status_code)


def test_shutdown_under_load_loses_no_ledger_row(ops: OpsGateway) -> None:
    with httpx.Client(timeout=30) as c:
        r = c.post(ops.url, json=call(1, "echo", {"text": "x"}), headers=HEADERS)
        mac, inv = l402_challenge(r)
        pre = dev_pay(ops, inv)
    meta = {"turnpike/l402": {"macaroon": mac, "preimage": pre}}
    stop = threading.Event()
    oks: list = []
    errors: list = []
    threads = [threading.Thread(target=_paid_echo, args=(ops.url, meta, stop, oks, errors))
               for _ in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: len(oks) >= 60, 60, "paid calls under way")
    ops.proc.popen.send_signal(signal.SIGTERM)
    assert ops.proc.popen.wait(timeout=60) == 0
    stop.set()
    for t in threads:
        t.join()
    with ops.db() as db:
        debits = db.execute("SELECT COUNT(*) FROM l402_debits WHERE refunded = 0").fetchone()[0]
        spent = db.execute("SELECT spent_msat FROM l402_balances").fetchone()[0]
    assert debits == len(oks), f"{len(oks)} calls answered 200, {debits} debits in the ledger"
    assert spent == len(oks) * ECHO_MSAT
    assert all(not isinstance(e, int) for e in errors), f"refused during shutdown: {errors[:5]}"
    assert "stopped" in ops.log_path.read_text()


def test_init_writes_a_config_check_passes(work: Path) -> None:
    out = work / "init" / "turnpike.toml"
    r = subprocess.run([str(TURNPIKE), "init", "--non-interactive", "--upstream",
                        "http://127.0.0.1:3001/mcp", "--rails", "pow,l402", "--lightning", "dev",
                        "--price-sat", "3", "--output", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("#") > 10, "the file is commented"
    c = subprocess.run([str(TURNPIKE), "check", "--config", str(out)], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    assert "ok" in c.stdout and "3 sat" in c.stdout or "3000 msat" in c.stdout, c.stdout
    again = subprocess.run([str(TURNPIKE), "init", "--non-interactive", "--upstream", "http://x/mcp",
                            "--output", str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
    # An error is explained at its line.
    out.write_text(text.replace("challenge_mode = \"auto\"", "challenge_mode = \"loud\""))
    c = subprocess.run([str(TURNPIKE), "check", "--config", str(out)], capture_output=True, text=True)
    line = 1 + text.splitlines().index(next(l for l in text.splitlines() if l.startswith("challenge_mode")))
    assert c.returncode == 1 and f"turnpike.toml:{line}:" in c.stderr and "hint:" in c.stderr, c.stderr
