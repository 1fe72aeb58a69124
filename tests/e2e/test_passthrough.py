"""Credentials never reach the upstream: the recording upstream shows what the gateway forwards."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from turnpike_e2e import Gateway, RawSession, authorization, parse_www_authenticate, pow_challenges, py_solve

STRIPPED_HEADERS = {"authorization", "macaroon", "dpop"}


def recorded_call(record: Path, marker: str, timeout: float = 10.0) -> dict:
    """The recorded tools/call whose arguments carry `marker`."""
    deadline = time.monotonic() + timeout
    while True:
        if record.exists():
            for line in record.read_text().splitlines():
                entry = json.loads(line)
                body = entry["body"]
                if (isinstance(body, dict) and body.get("method") == "tools/call"
                        and (body.get("params") or {}).get("arguments", {}).get("marker") == marker):
                    return entry
        if time.monotonic() >= deadline:
            raise AssertionError(f"the upstream never received the call marked {marker}")
        time.sleep(0.05)


def assert_clean(entry: dict, kind: str) -> dict:
    """No credential header, no turnpike/* key in _meta. Returns the forwarded _meta."""
    if kind == "http":
        headers = entry["headers"]
        leaked = sorted(h for h in headers if h in STRIPPED_HEADERS or h.startswith("turnpike-"))
        assert not leaked, f"headers forwarded upstream: {leaked}"
    meta = (entry["body"].get("params") or {}).get("_meta") or {}
    leaked_meta = [k for k in meta if k.startswith("turnpike/")]
    assert not leaked_meta, f"_meta keys forwarded upstream: {leaked_meta}"
    return meta


def test_free_call_forwarded_without_credentials(gw_record: tuple[Gateway, Path, str]) -> None:
    gw, record, kind = gw_record
    marker = uuid.uuid4().hex
    with RawSession(gw.url) as s:
        s.initialize()
        # A genuine (unsolved) challenge, so the _meta credential is well-formed.
        r, _ = s.call_tool("record", {"marker": "challenge"}, headers={"Turnpike-Challenge": "http"})
        assert r.status_code == 402, r.text[:300]
        token = dict(parse_www_authenticate(pow_challenges(r)[0])[1])["challenge"]
        meta = {
            "turnpike/pow": {"challenge": token, "solution": "1,2,3,4"},
            "turnpike/anything": {"secret": "s3cr3t"},
            "progressToken": "p-1",
            "example.com/keep": {"x": 1},
        }
        headers = {
            "Authorization": "Bearer s3cr3t-token",
            "Macaroon": "AgEEbHNhdA",
            "DPoP": "eyJhbGciOiJFUzI1NiJ9.e30.sig",
            "Turnpike-Challenge": "in-band",
            "Turnpike-Debug": "s3cr3t",
        }
        r, m = s.call_tool("record-free", {"marker": marker}, meta=meta, headers=headers)
        assert r.status_code == 200, r.text[:300]
        assert m["result"]["content"][0]["text"] == "recorded", m

    entry = recorded_call(record, marker)
    fwd = assert_clean(entry, kind)
    assert fwd.get("progressToken") == "p-1"
    assert fwd.get("example.com/keep") == {"x": 1}
    assert "s3cr3t" not in json.dumps(entry)


def test_paid_call_in_meta_forwarded_without_it(gw_record: tuple[Gateway, Path, str]) -> None:
    gw, record, kind = gw_record
    marker = uuid.uuid4().hex
    args = {"marker": marker}
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("record", args, headers={"Turnpike-Challenge": "http"})
        assert r.status_code == 402, r.text[:300]
        token = dict(parse_www_authenticate(pow_challenges(r)[0])[1])["challenge"]
        solution = ",".join(map(str, py_solve(token)))
        meta = {"turnpike/pow": {"challenge": token, "solution": solution}, "progressToken": 7}
        r, m = s.call_tool("record", args, meta=meta)
        assert r.status_code == 200, r.text[:300]
        assert m["result"]["isError"] is False, m
        assert m["result"]["content"][0]["text"] == "recorded"

    entry = recorded_call(record, marker)
    fwd = assert_clean(entry, kind)
    assert fwd.get("progressToken") == 7
    assert token not in json.dumps(entry)
    assert entry["body"]["params"]["arguments"] == args


def test_paid_call_by_header_forwarded_without_it(gw_record: tuple[Gateway, Path, str]) -> None:
    gw, record, kind = gw_record
    marker = uuid.uuid4().hex
    args = {"marker": marker}
    with RawSession(gw.url) as s:
        s.initialize()
        r, _ = s.call_tool("record", args, headers={"Turnpike-Challenge": "http"})
        assert r.status_code == 402, r.text[:300]
        token = dict(parse_www_authenticate(pow_challenges(r)[0])[1])["challenge"]
        auth = authorization(token, py_solve(token))
        r, m = s.call_tool("record", args, headers={"Authorization": auth, "Turnpike-Challenge": "http"})
        assert r.status_code == 200, r.text[:300]
        assert m["result"]["content"][0]["text"] == "recorded"

    entry = recorded_call(record, marker)
    assert_clean(entry, kind)
    assert token not in json.dumps(entry)
