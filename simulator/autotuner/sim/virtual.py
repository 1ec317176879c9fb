"""Closed-loop load in simulated time, with no HTTP and no sleeping: exact and fast.

Used by the tests of the performance model's directions and by the bench; the HTTP server runs
the same engine in (scaled) wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotuner.sim.builder import build_engine
from autotuner.sim.config import SimConfig
from autotuner.sim.engine import SimRequest, Status


@dataclass(frozen=True)
class VirtualResult:
    """Means over the finished requests, in simulated seconds and tokens per simulated second."""

    requests: int
    ttft_mean: float
    tpot_mean: float
    e2e_mean: float
    output_throughput: float
    preemptions: int
    failed: int


def closed_loop(
    config: SimConfig, *, concurrency: int, requests: int, prompt_tokens: int, output_tokens: int
) -> VirtualResult:
    """``concurrency`` clients each send a new request the moment their previous one finishes,
    until ``requests`` have been sent. The engine is built from ``config`` (time_scale ignored)."""

    engine, _ = build_engine(config)
    sent = 0
    done: list[SimRequest] = []

    def on_update(req: SimRequest) -> None:
        nonlocal sent
        if req.done:
            done.append(req)
            if sent < requests:
                sent += 1
                engine.submit(prompt_tokens, output_tokens, on_update)

    for _ in range(min(concurrency, requests)):
        sent += 1
        engine.submit(prompt_tokens, output_tokens, on_update)
    start = engine.now()
    engine.run_virtual()
    ok = [r for r in done if r.status is Status.FINISHED]
    elapsed = engine.now() - start
    n = max(len(ok), 1)
    return VirtualResult(
        requests=len(ok),
        ttft_mean=sum((r.first_token or 0.0) - r.arrival for r in ok) / n,
        tpot_mean=sum(((r.finish or 0.0) - (r.first_token or 0.0)) / max(r.generated - 1, 1) for r in ok) / n,
        e2e_mean=sum((r.finish or 0.0) - r.arrival for r in ok) / n,
        output_throughput=sum(r.generated for r in ok) / elapsed if elapsed > 0 else 0.0,
        preemptions=engine.stats.preemptions,
        failed=engine.stats.requests_failed,
    )
