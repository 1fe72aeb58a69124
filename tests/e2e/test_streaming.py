"""A paid, long-running call streams its progress through the gateway as it happens."""

from __future__ import annotations

import json
import time

import anyio
from mcp import Client

from turnpike_e2e import Gateway, cli_solve_meta

DURATION = 2
STEPS = 4


def test_progress_streams_through_the_gateway(gw: Gateway) -> None:
    args = {"duration": DURATION, "steps": STEPS}

    async def main():
        async with Client(gw.url) as c:
            first = await c.call_tool("trigger-long-running-operation", args)
            assert first.is_error is True, first
            meta = cli_solve_meta(stdin=json.dumps(first.model_dump(by_alias=True, exclude_none=True)))

            events: list[tuple[float, float, float | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                events.append((time.monotonic(), progress, total))

            t0 = time.monotonic()
            result = await c.call_tool("trigger-long-running-operation", args, meta=meta,
                                       progress_callback=on_progress, read_timeout_seconds=30)
            t_result = time.monotonic()
            return t0, t_result, events, result

    t0, t_result, events, result = anyio.run(main)

    assert result.is_error is False, result
    assert "Long running operation completed" in result.content[0].text

    assert len(events) >= STEPS - 1, f"only {len(events)} progress notifications: {events}"
    times = [t for t, _, _ in events]
    progress = [p for _, p, _ in events]
    assert progress == sorted(progress) and len(set(progress)) == len(progress), progress
    assert all(t < t_result for t in times), "progress arrived after the result"
    # Spread over the call, not delivered in one burst at the end.
    assert times[-1] - times[0] >= 0.5 * DURATION * (len(events) - 1) / STEPS, \
        [round(t - t0, 3) for t in times]
    assert t_result - times[0] >= 0.5 * DURATION * (STEPS - 1) / STEPS, \
        (round(times[0] - t0, 3), round(t_result - t0, 3))
    # Consecutive notifications arrive as separate events.
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) > 0.05 * DURATION / STEPS, gaps
