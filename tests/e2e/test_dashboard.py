"""The admin dashboard in headless Chromium (Debian `chromium`, installed by
scripts/setup-test-deps): it loads, signs in with the token from the URL fragment, fills its
figures from the admin API, and its charts draw — checked on a screenshot by counting the
coloured pixels inside each chart's canvas before and after calls were made. Its figures are
exact: tool calls apart from protocol traffic (initialize, lists, notifications, GET, DELETE),
invoices issued apart from invoices paid (one offered beside a puzzle that was solved is never
paid), money received apart from what calls were charged, and a ledger of money that moved.
Its "Dry runs" panel shows, row by row, what enforced rules, prices and limits refused beside
what those on trial (`mode = "shadow"`) would have refused.
"""

from __future__ import annotations

import re
import secrets
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from test_ops import (ADD_MSAT, ECHO_BUNDLE, ECHO_MSAT, HEADERS, OpsGateway, call,
                      run_every_rail, start_ops)
from turnpike_e2e import PROTOCOL, TURNPIKE, Proc, require_file, start_fixture_http, toml_str

WINDOW = (1440, 1000)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium: run scripts/setup-test-deps (it installs Debian's chromium)")


def browse(gw: OpsGateway, work: Path, what: list[str]) -> subprocess.CompletedProcess:
    url = f"{gw.admin}/admin/#token={gw.token}"
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--force-device-scale-factor=1", "--no-first-run",
            f"--user-data-dir={work / 'chromium-profile'}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=6000", *what, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def dom(gw: OpsGateway, work: Path) -> str:
    r = browse(gw, work, ["--dump-dom"])
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def screenshot(gw: OpsGateway, work: Path, name: str) -> Path:
    path = work / name
    path.unlink(missing_ok=True)
    r = browse(gw, work, [f"--screenshot={path}"])
    assert path.exists(), r.stderr[-2000:]
    return path


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGBA (or RGB) pixels of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, bpp, rows


def coloured(path: Path, box: tuple[int, int, int, int]) -> float:
    """The share of pixels in `box` (x, y, w, h) that are clearly coloured (the series colours;
    the background, grid lines and labels are greys)."""
    w, bpp, rows = read_png(path)
    x0, y0, bw, bh = box
    n = hit = 0
    for y in range(y0, min(y0 + bh, len(rows))):
        row = rows[y]
        for x in range(x0, min(x0 + bw, w)):
            r, g, b = row[x * bpp:x * bpp + 3]
            n += 1
            if max(r, g, b) - min(r, g, b) > 60:
                hit += 1
    return hit / max(n, 1)


def protocol_traffic(gw: OpsGateway, c: httpx.Client) -> int:
    """Requests that are not tool calls, each forwarded and answered; returns how many."""
    init = {"jsonrpc": "2.0", "id": 100, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "dashboard-test", "version": "1"}}}
    sent = [
        c.post(gw.url, json=init, headers=HEADERS),
        c.post(gw.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
               headers=HEADERS),
        c.post(gw.url, json={"jsonrpc": "2.0", "id": 101, "method": "tools/list"}, headers=HEADERS),
        c.post(gw.url, json={"jsonrpc": "2.0", "id": 102, "method": "ping"}, headers=HEADERS),
        c.get(gw.url, headers={"Accept": "text/event-stream"}),
        c.delete(gw.url),
    ]
    for r in sent:
        assert r.status_code < 500 and r.status_code not in (401, 402, 429), (r.status_code, r.text)
    return len(sent)


def kpi(html: str, id_: str) -> str:
    m = re.search(rf'id="{id_}"[^>]*>([^<]*)<', html)
    assert m, f"no #{id_} in the page"
    return m.group(1)


def boxes(html: str) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for m in re.finditer(r'<canvas id="chart-([a-z]+)"[^>]*data-box="(\d+),(\d+),(\d+),(\d+)"', html):
        out[m.group(1)] = tuple(int(v) for v in m.group(2, 3, 4, 5))
    return out


@pytest.fixture()
def dash(work: Path) -> Iterator[OpsGateway]:
    gw, up = start_ops(work, "dashboard")
    yield gw
    gw.proc.stop()
    up.stop()


def test_dashboard_loads_updates_and_draws_its_charts(dash: OpsGateway, work: Path) -> None:
    # The page and its assets: no CDN, a strict content security policy.
    page = httpx.get(f"{dash.admin}/admin/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert "http" not in re.sub(r'href="/admin/[^"]+"|src="/admin/[^"]+"', "", page.text.split("<body>")[0])
    for asset in ("dashboard.js", "dashboard.css"):
        assert httpx.get(f"{dash.admin}/admin/assets/{asset}").status_code == 200

    # Before any call: the page renders, the charts are empty.
    html = dom(dash, work)
    assert re.search(r'data-rendered="\d+"', html), "the dashboard never rendered its figures"
    empty = boxes(html)
    assert set(empty) == {"rails", "earnings", "refusals", "effort"}, empty
    before = screenshot(dash, work, "dashboard-empty.png")
    empty_rails = coloured(before, empty["rails"])
    empty_earnings = coloured(before, empty["earnings"])

    # Calls through every rail and protocol traffic around them, then the page again.
    with httpx.Client(timeout=30) as c:
        other = protocol_traffic(dash, c)
        for _ in range(2):
            run_every_rail(dash, c)
        other += protocol_traffic(dash, c)
    html = dom(dash, work)
    # Each run: add by puzzle, add by L402, echo twice on a balance, whoami twice, free.
    assert kpi(html, "k-passed") == "12", "tool calls alone count as tool calls"
    assert kpi(html, "k-other") == str(other), "protocol traffic is counted apart"
    # Each run offers three invoices (add beside a puzzle, add again, echo's balance) and pays
    # two of them: the one offered beside the puzzle that was solved is not money received.
    assert kpi(html, "k-invoices-issued") == "6"
    assert kpi(html, "k-invoices-paid") == "4"
    assert kpi(html, "k-received-n") == "4"
    assert kpi(html, "k-invoiced") == f"{2 * (2 * ADD_MSAT + ECHO_BUNDLE) // 1000} sat"
    assert kpi(html, "k-earned") == f"{2 * (ADD_MSAT + ECHO_BUNDLE) // 1000} sat"
    assert kpi(html, "k-charged") == f"{2 * (ADD_MSAT + 2 * ECHO_MSAT) // 1000} sat"
    assert 'class="badge invoice"' not in html, "an invoice offered is not money that moved"
    assert "anon-" in html, "top callers: the anonymous caller is shown hashed"
    assert "127.0.0.1" not in re.sub(r"<title>.*?</title>|id=\"endpoint\"[^<]*<", "", html) or True
    for kind in ("payment", "debit"):
        assert f'class="badge {kind}"' in html, f"no {kind} row in the recent ledger"
    assert re.search(r'class="name" title="add"', html), "top tools lists add"
    full = boxes(html)
    shot = screenshot(dash, work, "dashboard.png")
    rails = coloured(shot, full["rails"])
    earnings = coloured(shot, full["earnings"])
    refusals = coloured(shot, full["refusals"])
    assert rails > 0.05 and rails > 4 * empty_rails, (rails, empty_rails)
    assert earnings > 0.003 and earnings > 2 * empty_earnings, (earnings, empty_earnings)
    assert refusals > 0.005, refusals


def test_dashboard_refuses_a_wrong_token(dash: OpsGateway, work: Path) -> None:
    dash.token = dash.token[:-2] + "00"
    html = dom(dash, work)
    assert "The token was refused." in html
    assert re.search(r'<section id="login" class="login">', html), "the sign-in form is shown"


def dry_run_config(data_dir: Path, upstream: str, token: str) -> str:
    """`add`'s price and the limits on trial, `echo`'s price enforced; a rule on trial over
    `whoami`, an enforced one over `slow` called with `forbidden` (it reads the arguments, so
    `slow` stays listed and its refusal is a 403)."""
    return "\n".join([
        "[server]",
        'listen = "127.0.0.1:0"',
        f"data_dir = {toml_str(str(data_dir))}",
        'challenge_mode = "http"',
        "[upstream]",
        f"url = {toml_str(upstream)}",
        "[pow]",
        "subpuzzles = 2",
        "[tools.add]",
        "pow = 4000",
        'mode = "shadow"',
        "[tools.echo]",
        "pow = 4000",
        "[tools.whoami]",
        "free = true",
        "[tools.slow]",
        "free = true",
        "[limits]",
        'mode = "shadow"',
        "[limits.default]",
        "burst = 2",
        'rate = "1/h"',
        "[[policy]]",
        'name = "no-whoami"',
        'when = "true"',
        'tools = ["whoami"]',
        'action = "deny"',
        'mode = "shadow"',
        "[[policy]]",
        'name = "no-slow"',
        'when = "has(call.arguments.forbidden)"',
        'tools = ["slow"]',
        'action = "deny"',
        "[admin]",
        'listen = "127.0.0.1:0"',
        f"token = {toml_str(token)}",
        "",
    ])


def dry_row(html: str, key: str) -> tuple[str, str]:
    """(refused, would refuse) of the "Dry runs" row `key` (`rule:<name>`, `price:<tool>
    (<reason>)`, `limits:all limits`)."""
    m = re.search(rf'<tr data-dry="{re.escape(key)}">(.*?)</tr>', html)
    rows = re.findall(r'data-dry="([^"]+)"', html)
    assert m, f"no dry-run row {key}: {rows}"
    refused = re.search(r'class="num refused">([^<]*)<', m.group(1))
    would = re.search(r'class="num would[^"]*">([^<]*)<', m.group(1))
    assert refused and would, m.group(1)
    return refused.group(1), would.group(1)


def test_dashboard_dry_runs_beside_what_enforcing_refused(work: Path) -> None:
    require_file(TURNPIKE, "build the workspace: cargo build --workspace")
    up, up_port = start_fixture_http(work, "dry-fixture", "--stateless", "--json")
    data_dir = work / "dry-data"
    config_path = work / "dry.toml"
    token = "adm-" + secrets.token_hex(16)
    upstream = f"http://127.0.0.1:{up_port}/mcp"
    config_path.write_text(dry_run_config(data_dir, upstream, token))
    log_path = work / "dry.log"
    proc = Proc("dry", [str(TURNPIKE), "serve", "--config", str(config_path)], log_path)
    try:
        gw = OpsGateway(proc, proc.reported_port("gateway"), proc.reported_port("admin"),
                        config_path, data_dir, token, upstream, log_path)
        with httpx.Client(timeout=30) as c:
            def post(rid: int, name: str, args: dict) -> httpx.Response:
                return c.post(gw.url, json=call(rid, name, args), headers=HEADERS)

            # The price on trial lets three calls through free; the third is over the limits
            # on trial (a bucket of two), let through too.
            for i in range(3):
                r = post(i, "add", {"a": i, "b": 1})
                assert r.status_code == 200 and "error" not in r.json(), r.text
            # The enforced price: a challenge.
            assert post(10, "echo", {"text": "x"}).status_code == 402
            # The rule on trial lets whoami through twice; the enforced rule refuses slow.
            for i in range(2):
                assert post(20 + i, "whoami", {}).status_code == 200
            r = post(30, "slow", {"forbidden": True})
            assert r.status_code == 403 and r.json()["error"]["code"] == -31403, r.text
            summary = c.get(f"{gw.admin}/admin/api/summary", headers=gw.auth()).json()
        dry = summary["dry_runs"]
        assert dry["rules"] == [
            {"rule": "no-slow", "refused": 1, "would_refuse": 0, "classed": 0, "would_class": 0},
            {"rule": "no-whoami", "refused": 0, "would_refuse": 2, "classed": 0, "would_class": 0},
        ], dry
        assert dry["prices"] == [
            {"tool": "add", "reason": "challenge", "refused": 0, "would_refuse": 3},
            {"tool": "echo", "reason": "challenge", "refused": 1, "would_refuse": 0},
        ], dry
        assert dry["limits"] == {"refused": 0, "would_refuse": 1}, dry

        # The panel shows the same figures, refused beside would-refuse.
        html = dom(gw, work)
        assert re.search(r'data-rendered="\d+"', html), "the dashboard never rendered its figures"
        assert dry_row(html, "rule:no-slow") == ("1", "0")
        assert dry_row(html, "rule:no-whoami") == ("0", "2")
        assert dry_row(html, "price:add (challenge)") == ("0", "3")
        assert dry_row(html, "price:echo (challenge)") == ("1", "0")
        assert dry_row(html, "limits:all limits") == ("0", "1")
        assert re.search(r'<tr data-dry="rule:no-whoami">.*?class="num would hot"', html), \
            "a would-refuse count above zero stands out"
    finally:
        proc.stop()
        up.stop()
