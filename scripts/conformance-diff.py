#!/usr/bin/env python3
"""Compares two runs of the MCP conformance suite's server scenarios.

Usage: conformance-diff.py UPSTREAM_DIR GATEWAY_DIR [--expected FILE] [--scenarios N] [--label L]
                          [--common-only]

Each DIR is the suite's --output-dir: one folder per scenario (`server-<scenario>-<timestamp>`)
holding checks.json. Every check is reduced to (scenario, check id, status, error message with
ports, ids and times scrubbed); timings, ids, ports and free-form details are dropped. The two
runs must then be identical, except for the deviations listed in the expected file, each of
which must show up exactly as listed.

Expected-deviations file(s) (--expected, repeatable): one line per check,
`scenario/check-id UPSTREAM_STATUS GATEWAY_STATUS`, where a status is one of the suite's
(SUCCESS, FAILURE, WARNING, INFO, …), `A+B` for a check id reported twice, or MISSING;
`#` starts a comment.

With --common-only, only the scenarios both runs have are compared (--scenarios still counts
each whole run): for two requirement sets of one release, such as the 2025-11-25 scenarios
straight at a 2025 server and the 2026-07-28 scenarios through the gateway's translation in
front of it.

Prints the differences (if any) and a one-line summary; exit 0 when the runs agree, 1 otherwise,
2 when a run is incomplete or unreadable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DIR_RE = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")

SCRUB = [
    # URLs and host:port pairs: the two runs talk to different ports.
    (re.compile(r"https?://[^\s\"']+"), "<url>"),
    (re.compile(r"\b(?:127\.0\.0\.1|localhost|\[::1\]):\d+\b"), "<host:port>"),
    # UUIDs, long hex ids, timestamps.
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?"), "<time>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?ms\b"), "<ms>"),
]


def scrub(text: str) -> str:
    for pattern, repl in SCRUB:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def load_run(run_dir: Path) -> dict[str, list[dict]]:
    """Returns scenario -> list of normalised checks, sorted by check id."""
    runs: dict[str, list[dict]] = {}
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        m = DIR_RE.match(sub.name)
        if not m:
            continue
        scenario = m.group("scenario")
        checks_file = sub / "checks.json"
        if not checks_file.is_file():
            raise ValueError(f"{sub}: no checks.json")
        raw = json.loads(checks_file.read_text())
        if not isinstance(raw, list):
            raise ValueError(f"{checks_file}: not a JSON array")
        checks = []
        for c in raw:
            checks.append(
                {
                    "id": str(c.get("id", "?")),
                    "status": str(c.get("status", "?")),
                    "error": scrub(str(c.get("errorMessage") or "")),
                }
            )
        # Keep the reported order: a repeated check id is compared as a sequence.
        if scenario in runs:
            raise ValueError(f"{run_dir}: scenario {scenario} appears twice")
        runs[scenario] = checks
    return runs


def load_expected(path: Path) -> dict[str, tuple[str, str]]:
    expected: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or "/" not in parts[0]:
            raise ValueError(f"{path}:{n}: expected `scenario/check-id UPSTREAM GATEWAY`")
        expected[parts[0]] = (parts[1], parts[2])
    return expected


def by_id(checks: list[dict]) -> dict[str, list[dict]]:
    """Check id -> its results in the order reported (an id may be reported more than once)."""
    out: dict[str, list[dict]] = {}
    for c in checks:
        out.setdefault(c["id"], []).append(c)
    return out


def statuses(checks: list[dict]) -> str:
    """`STATUS` or `STATUS+STATUS…` for a repeated check id; `MISSING` when absent."""
    return "+".join(c["status"] for c in checks) or "MISSING"


def scenario_passed(checks: list[dict]) -> bool:
    return bool(checks) and all(c["status"] in ("SUCCESS", "INFO", "SKIPPED") for c in checks)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream", type=Path)
    ap.add_argument("gateway", type=Path)
    ap.add_argument("--expected", type=Path, action="append", default=[])
    ap.add_argument("--scenarios", type=int, help="number of scenarios each run must have")
    ap.add_argument("--json-out", type=Path, help="write both normalised runs here")
    ap.add_argument("--label", default="", help="names the gateway run in the summary")
    ap.add_argument("--common-only", action="store_true",
                    help="compare only the scenarios both runs have (runs of two requirement sets)")
    args = ap.parse_args()

    try:
        up = load_run(args.upstream)
        gw = load_run(args.gateway)
        expected = {}
        for f in args.expected:
            expected.update(load_expected(f))
    except (OSError, ValueError) as e:
        print(f"conformance: cannot read results: {e}")
        return 2

    if args.json_out:
        args.json_out.write_text(json.dumps({"upstream": up, "gateway": gw}, indent=2, sort_keys=True))

    if args.scenarios is not None:
        for name, run in (("upstream", up), ("gateway", gw)):
            if len(run) != args.scenarios:
                print(f"conformance: the {name} run has {len(run)} scenarios, expected {args.scenarios}")
                return 2

    if args.common_only:
        common = set(up) & set(gw)
        up = {k: v for k, v in up.items() if k in common}
        gw = {k: v for k, v in gw.items() if k in common}

    diffs: list[str] = []
    deviations_seen: list[str] = []
    identical = 0
    for scenario in sorted(set(up) | set(gw)):
        a = up.get(scenario)
        b = gw.get(scenario)
        if a is None or b is None:
            diffs.append(f"- {scenario}: only in the {'gateway' if a is None else 'upstream'} run")
            continue
        a_by = by_id(a)
        b_by = by_id(b)
        same = True
        for cid in sorted(set(a_by) | set(b_by)):
            ca, cb = a_by.get(cid, []), b_by.get(cid, [])
            key = f"{scenario}/{cid}"
            got_up, got_gw = statuses(ca), statuses(cb)
            if key in expected:
                want_up, want_gw = expected[key]
                if (got_up, got_gw) == (want_up, want_gw):
                    deviations_seen.append(f"{key}: {got_up} upstream, {got_gw} through the gateway (expected)")
                else:
                    same = False
                    diffs.append(
                        f"- {key}: expected {want_up} upstream / {want_gw} through the gateway, "
                        f"got {got_up} / {got_gw}"
                    )
                continue
            if ca == cb:
                continue
            same = False
            diffs.append(f"- {key}:")
            for who, checks in (("upstream", ca), ("gateway ", cb)):
                if not checks:
                    diffs.append(f"    {who}: MISSING")
                for c in checks:
                    diffs.append(f"    {who}: {c['status']}  {c['error']}".rstrip())
        if same:
            identical += 1

    total = len(set(up) | set(gw))
    via = f" ({args.label})" if args.label else ""
    passed_up = sum(1 for s in up.values() if scenario_passed(s))
    failed_up = len(up) - passed_up
    for d in deviations_seen:
        print(f"  deviation: {d}")
    if diffs:
        print(f"conformance: the gateway run{via} differs from the upstream run:")
        for line in diffs:
            print(line)
        print(
            f"conformance: {total} scenarios, {total - identical} differ through the gateway{via} "
            f"({passed_up} passed, {failed_up} failed upstream)"
        )
        print(f"conformance: {identical} passed, {total - identical} failed")
        return 1
    extra = f", {len(deviations_seen)} expected deviation(s)" if deviations_seen else ""
    print(
        f"conformance: {total} scenarios, identical through the gateway{via} "
        f"({passed_up} passed, {failed_up} failed upstream{extra})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
