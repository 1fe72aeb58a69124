"""OpenTelemetry traces: the gateway's OTLP/HTTP export, read by a collector that decodes every
request with the official protobuf definitions (the `opentelemetry-proto` package).

The gateway sits in front of the recording upstream (tests/e2e/recorder.py), which shows the
`traceparent` the upstream received, and exports to a collector on a loopback port of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from test_passthrough import recorded_call
from turnpike_e2e import (
    Gateway,
    GatewayConfig,
    RawSession,
    authorization,
    parse_www_authenticate,
    pow_challenges,
    py_solve,
    start_gateway,
    start_recorder_http,
)

EFFORT = 2000
COLLECTOR_SECRET = "Bearer collector-s3cret-" + uuid.uuid4().hex


@dataclass
class Collector:
    """An OTLP/HTTP traces receiver on 127.0.0.1:0."""

    server: ThreadingHTTPServer
    lock: threading.Lock = field(default_factory=threading.Lock)
    bodies: list[bytes] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def raw(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)

    def wait_for(self, pred, what: str, timeout: float = 15.0) -> list[Span]:
        """The spans received so far once `pred(spans)` holds (polled; the exporter flushes
        every 100 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
                assert not self.errors, self.errors
            if pred(spans):
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(f"the collector never received {what}; got {len(spans)} spans: "
                                     f"{sorted({s.name for s in spans})}")
            time.sleep(0.05)


def start_collector() -> Collector:
    holder: dict[str, Collector] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            c = holder["c"]
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                assert self.path == "/v1/traces", self.path
                assert self.headers.get("content-type") == "application/x-protobuf"
                req = ExportTraceServiceRequest.FromString(body)
                with c.lock:
                    c.bodies.append(body)
                    c.headers.append({k.lower(): v for k, v in self.headers.items()})
                    for rs in req.resource_spans:
                        c.resources.append(attrs(rs.resource.attributes))
                        for ss in rs.scope_spans:
                            assert ss.scope.name == "turnpike"
                            c.spans.extend(ss.spans)
            except Exception as e:  # recorded, then the test fails on it
                with c.lock:
                    c.errors.append(repr(e))
            out = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    c = Collector(server)
    holder["c"] = c
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return c


def attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def tp(trace: str, span: str, flags: str = "01") -> str:
    return f"00-{trace}-{span}-{flags}"


def new_trace() -> tuple[str, str]:
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def traced(work: Path) -> Iterator[tuple[Gateway, Path, Collector]]:
    collector = start_collector()
    up, url, record = start_recorder_http(work, "recorder-telemetry")
    cfg = GatewayConfig(upstream_url=url, default_pow=EFFORT)
    cfg.tools = {"record-free": {"free": True}, "record-limited": {"free": True}}
    cfg.extra = "\n".join([
        "[limits.tools.record-limited]",
        "burst = 1",
        'rate = "1/h"',
        "",
        "[telemetry]",
        f'otlp_endpoint = "{collector.url}"',
        'service_name = "turnpike-e2e"',
        "flush_interval_ms = 100",
        f'headers = {{ authorization = "{COLLECTOR_SECRET}" }}',
    ])
    gw = start_gateway(work, "gw-telemetry", cfg)
    yield gw, record, collector
    gw.proc.stop()
    up.stop()
    collector.server.shutdown()


def server_span(spans: list[Span], trace: str, **want: object) -> Span | None:
    for s in spans:
        if s.kind != Span.SPAN_KIND_SERVER or s.trace_id.hex() != trace:
            continue
        a = attrs(s.attributes)
        if all(a.get(k) == v for k, v in want.items()):
            return s
    return None


def children(spans: list[Span], parent: Span) -> dict[str, Span]:
    return {s.name: s for s in spans if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id}


def header(entry: dict, name: str) -> str:
    """One header the upstream received (the recorder keeps each header's values as a list)."""
    values = entry["headers"][name]
    assert len(values) == 1, values
    return values[0]


def events(span: Span) -> dict[str, dict]:
    return {e.name: attrs(e.attributes) for e in span.events}


def test_a_paid_call_is_one_trace_under_the_callers_span(traced) -> None:
    gw, record, collector = traced
    trace, caller_span = new_trace()
    marker = uuid.uuid4().hex
    with RawSession(gw.url) as s:
        s.initialize()
        # The challenge: a server span of its own in the caller's trace, with the event.
        r, _ = s.call_tool("record", {"marker": marker},
                           headers={"Turnpike-Challenge": "http", "traceparent": tp(trace, caller_span)})
        assert r.status_code == 402, r.text[:300]
        token = dict(parse_www_authenticate(pow_challenges(r)[0])[1])["challenge"]
        credential = authorization(token, py_solve(token))
        r, msg = s.call_tool("record", {"marker": marker},
                             headers={"Authorization": credential, "traceparent": tp(trace, caller_span)})
        assert r.status_code == 200 and msg and "result" in msg, r.text[:300]

    spans = collector.wait_for(
        lambda sp: server_span(sp, trace, **{"turnpike.outcome": "paid"}) is not None
        and server_span(sp, trace, **{"turnpike.outcome": "challenged"}) is not None,
        "the paid call's and the challenge's spans")

    challenged = server_span(spans, trace, **{"turnpike.outcome": "challenged"})
    assert challenged.parent_span_id.hex() == caller_span
    assert challenged.name == "tools/call record"
    ev = events(challenged)
    assert "pow" in ev["turnpike.challenge"]["turnpike.rails"].split(","), ev
    assert attrs(challenged.attributes)["http.response.status_code"] == 402

    paid = server_span(spans, trace, **{"turnpike.outcome": "paid"})
    a = attrs(paid.attributes)
    assert paid.name == "tools/call record"
    assert paid.parent_span_id.hex() == caller_span
    assert a["mcp.method.name"] == "tools/call"
    assert a["gen_ai.tool.name"] == "record"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["turnpike.rail"] == "pow"
    assert a["http.response.status_code"] == 200
    assert a["turnpike.caller.kind"] == "anonymous" and a["turnpike.caller"].startswith("anon-")
    assert events(paid)["turnpike.credential_accepted"]["turnpike.rail"] == "pow"
    assert paid.start_time_unix_nano < paid.end_time_unix_nano

    # The tree: the gate's stages and the upstream under the server span, verify under decide.
    kids = children(spans, paid)
    assert {"parse", "price", "decide", "limits", "tools/call record"} <= set(kids), sorted(kids)
    upstream = kids["tools/call record"]
    assert upstream.kind == Span.SPAN_KIND_CLIENT
    for name in ("parse", "price", "decide", "limits"):
        k = kids[name]
        assert k.kind == Span.SPAN_KIND_INTERNAL
        assert paid.start_time_unix_nano <= k.start_time_unix_nano <= k.end_time_unix_nano <= paid.end_time_unix_nano
    verify = children(spans, kids["decide"])["verify"]
    assert attrs(verify.attributes)["turnpike.rail"] == "pow"
    assert attrs(verify.attributes)["turnpike.verdict"] == "pass"
    assert kids["decide"].start_time_unix_nano <= verify.start_time_unix_nano

    # The upstream's parent is the gateway's upstream span, not the caller's span.
    entry = recorded_call(record, marker)
    assert header(entry, "traceparent") == tp(trace, upstream.span_id.hex())

    # The export carried the collector's header; the service is named as configured.
    assert any(h.get("authorization") == COLLECTOR_SECRET for h in collector.headers)
    assert {"service.name": "turnpike-e2e"}.items() <= collector.resources[0].items()

    # No credential anywhere in what was exported: not the challenge, not the solution, not the
    # caller's address.
    raw = collector.raw()
    for secret in (token, credential, credential.split(" ", 1)[1], COLLECTOR_SECRET, "127.0.0.1"):
        assert secret.encode() not in raw, f"{secret[:40]}… was exported"
    # Nor in the gateway's log: the collector's header.
    assert COLLECTOR_SECRET not in gw.proc.log_path.read_text()


def test_meta_trace_context_is_honoured_both_ways(traced) -> None:
    gw, record, collector = traced
    trace, caller_span = new_trace()
    marker = uuid.uuid4().hex
    with RawSession(gw.url) as s:
        s.initialize()
        r, msg = s.call_tool("record-free", {"marker": marker},
                             meta={"traceparent": tp(trace, caller_span), "tracestate": "vendor=v1",
                                   "progressToken": "p-1"})
        assert r.status_code == 200 and msg and "result" in msg, r.text[:300]
    spans = collector.wait_for(lambda sp: server_span(sp, trace) is not None, "the free call's span")
    root = server_span(spans, trace)
    assert root.parent_span_id.hex() == caller_span
    a = attrs(root.attributes)
    assert (a["turnpike.outcome"], a["gen_ai.tool.name"]) == ("free", "record-free")
    upstream = children(spans, root)["tools/call record-free"]
    assert upstream.kind == Span.SPAN_KIND_CLIENT
    # The upstream gets the gateway's span as parent in the header and in _meta; the rest of
    # _meta and the caller's tracestate go on as they came.
    entry = recorded_call(record, marker)
    expected = tp(trace, upstream.span_id.hex())
    assert header(entry, "traceparent") == expected
    assert header(entry, "tracestate") == "vendor=v1"
    meta = entry["body"]["params"]["_meta"]
    assert meta["traceparent"] == expected
    assert (meta["tracestate"], meta["progressToken"]) == ("vendor=v1", "p-1")


def test_an_unsampled_caller_is_not_recorded_and_goes_on_unchanged(traced) -> None:
    gw, record, collector = traced
    quiet, quiet_span = new_trace()
    loud, loud_span = new_trace()
    marker = uuid.uuid4().hex
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("record-free", {"marker": marker},
                           headers={"traceparent": tp(quiet, quiet_span, "00")})
        assert r.status_code == 200
        # A sampled call after it: once its spans are in, the unsampled one's would be too.
        r, _ = s.call_tool("record-free", {"marker": "after"},
                           headers={"traceparent": tp(loud, loud_span)})
        assert r.status_code == 200
    spans = collector.wait_for(lambda sp: server_span(sp, loud) is not None, "the sampled call's span")
    assert not [s for s in spans if s.trace_id.hex() == quiet]
    assert header(recorded_call(record, marker), "traceparent") == tp(quiet, quiet_span, "00")


def test_a_call_with_no_context_starts_a_trace(traced) -> None:
    gw, record, collector = traced
    marker = uuid.uuid4().hex
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("record-free", {"marker": marker})
        assert r.status_code == 200
    sent = header(recorded_call(record, marker), "traceparent")
    _, trace, parent, flags = sent.split("-")
    assert flags == "01"
    spans = collector.wait_for(lambda sp: server_span(sp, trace) is not None, "the new trace")
    root = server_span(spans, trace)
    assert root.parent_span_id == b""
    assert children(spans, root)["tools/call record-free"].span_id.hex() == parent


def test_a_limited_call_has_the_limit_as_an_event(traced) -> None:
    gw, _record, collector = traced
    trace, caller_span = new_trace()
    with RawSession(gw.url) as s:
        s.initialize()
        first, _ = s.call_tool("record-limited", {}, headers={"traceparent": tp(trace, caller_span)})
        assert first.status_code == 200
        second, _ = s.call_tool("record-limited", {}, headers={"traceparent": tp(trace, caller_span),
                                                               "Turnpike-Challenge": "http"})
        assert second.status_code == 429, second.text[:300]
    spans = collector.wait_for(
        lambda sp: server_span(sp, trace, **{"turnpike.outcome": "rate_limited"}) is not None,
        "the limited call's span")
    limited = server_span(spans, trace, **{"turnpike.outcome": "rate_limited"})
    a = attrs(limited.attributes)
    assert (a["http.response.status_code"], a["error.type"]) == (429, "429")
    ev = events(limited)["turnpike.limited"]
    assert ev["turnpike.retry_after_ms"] > 0 and ev["turnpike.limit.reason"], ev
    # Refused in the limits stage: the stages up to it, and no upstream span.
    assert set(children(spans, limited)) == {"parse", "price", "decide", "limits"}


def test_spans_waiting_at_shutdown_are_sent(work: Path) -> None:
    collector = start_collector()
    up, url, _record = start_recorder_http(work, "recorder-telemetry-shutdown")
    cfg = GatewayConfig(upstream_url=url)
    # Nothing would go out before an hour: only the shutdown's flush sends the span.
    cfg.extra = f'[telemetry]\notlp_endpoint = "{collector.url}"\nflush_interval_ms = 3600000\n'
    gw = start_gateway(work, "gw-telemetry-shutdown", cfg)
    try:
        trace, caller_span = new_trace()
        with RawSession(gw.url) as s:
            s.initialize()
            r, _ = s.call_tool("record", {}, headers={"traceparent": tp(trace, caller_span)})
            assert r.status_code == 200
        assert server_span(collector.wait_for(lambda sp: True, "nothing"), trace) is None
        gw.proc.stop()  # SIGTERM, then waits for the process to end
        assert gw.proc.popen.returncode == 0, gw.proc.log_tail()
        spans = collector.wait_for(lambda sp: server_span(sp, trace) is not None, "the last call's span",
                                   timeout=5.0)
        assert server_span(spans, trace).parent_span_id.hex() == caller_span
        flushed = [l for l in gw.proc.log_path.read_text().splitlines() if "telemetry flushed" in l]
        assert flushed and "spans_dropped=0" in flushed[0] and "spans_failed=0" in flushed[0], flushed
    finally:
        gw.proc.stop()
        up.stop()
        collector.server.shutdown()
