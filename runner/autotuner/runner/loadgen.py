"""The built-in closed-loop load generator: N workers per concurrency level, each sending one request
after the other.

Bounds that keep a run finite against any server: each level stops after ``max_requests`` requests or
at its deadline (``max_duration`` after the level started), whichever comes first; each request gives
up after ``request_timeout`` or at the level's deadline. Requests still in flight at the deadline are
cut off and counted as ``timeout`` errors, so a stalled server yields a result, not a hang.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from autotuner.runner.client import (
    Endpoint,
    ErrorKind,
    RequestRecord,
    build_payload,
    endpoint_url,
    send_request,
)
from autotuner.runner.scenario import Scenario, synthetic_prompt
from autotuner.runner.stats import LevelStats

DEADLINE_GRACE = 2.0
"""Seconds past a level's deadline after which still-running workers are cancelled outright (a request
normally notices the deadline itself; this guards against one that does not)."""


@dataclass(frozen=True)
class LoadConfig:
    """What the built-in runner sends."""

    url: str
    """Server base URL, with or without ``/v1``."""
    model: str
    """Model name sent in each request."""
    scenario: Scenario
    concurrency: tuple[int, ...]
    """Concurrency levels, run one after the other."""
    max_requests: int
    """Requests per level."""
    max_duration: float | None = None
    """Per-level time limit in seconds (``None``: only ``max_requests`` and the request timeout bound it)."""
    warmup: int = 2
    """Requests sent before the first level and not measured."""
    endpoint: Endpoint = Endpoint.COMPLETIONS
    request_timeout: float = 120.0
    """Seconds one request may take, first byte to last token."""
    seed: int = 0
    """Seed for token lengths and prompt words, so runs are reproducible."""


@dataclass
class RunOutcome:
    levels: list[LevelStats] = field(default_factory=list)
    duration: float = 0.0
    warmup_errors: int = 0


Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Requests:
    """Request bodies drawn from the scenario, reproducible from the seed."""

    def __init__(self, cfg: LoadConfig, rng: random.Random) -> None:
        self._cfg = cfg
        self._rng = rng
        self._url = endpoint_url(cfg.url, cfg.endpoint)

    @property
    def url(self) -> str:
        return self._url

    def make(self, n: int) -> Iterator[tuple[bytes, int]]:
        """``n`` (encoded body, input tokens) pairs, built lazily so memory stays flat for long runs."""
        for _ in range(n):
            n_in, n_out = self._cfg.scenario.sample(self._rng)
            body = build_payload(
                self._cfg.model, synthetic_prompt(n_in, self._rng), n_out, self._cfg.endpoint
            )
            yield orjson.dumps(body), n_in


async def run_level(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Iterator[tuple[bytes, int]],
    concurrency: int,
    max_duration: float | None,
    request_timeout: float,
    stop: asyncio.Event | None = None,
) -> LevelStats:
    """Send ``bodies`` with ``concurrency`` workers until done, the deadline or ``stop``; return what was
    measured. Requests cut off by ``stop`` or the deadline grace are recorded as ``timeout`` errors."""
    start = time.perf_counter()
    deadline = start + max_duration if max_duration is not None else float("inf")
    records: list[RequestRecord] = []
    stop = stop or asyncio.Event()

    async def worker() -> None:
        for body, n_in in bodies:
            now = time.perf_counter()
            if now >= deadline or stop.is_set():
                return
            try:
                rec = await send_request(session, url, body, n_in, min(deadline, now + request_timeout))
            except asyncio.CancelledError:
                records.append(
                    RequestRecord(n_in, error=ErrorKind.TIMEOUT, detail="cut off: the run was stopped")
                )
                raise
            records.append(rec)

    workers: asyncio.Future[Any] = asyncio.gather(*(worker() for _ in range(concurrency)))
    stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    wait_for = None if max_duration is None else max_duration + DEADLINE_GRACE
    await asyncio.wait({workers, stopper}, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not workers.done():
        workers.cancel()
    await asyncio.gather(workers, stopper, return_exceptions=True)
    return LevelStats(concurrency=concurrency, duration=time.perf_counter() - start, records=records)


async def run_load(
    cfg: LoadConfig, progress: Progress = _stderr, stop: asyncio.Event | None = None
) -> RunOutcome:
    """Warm up, then run every concurrency level in order; when ``stop`` is set (SIGTERM), end the
    current level at once and skip the rest, returning what was measured."""
    rng = random.Random(cfg.seed)
    reqs = _Requests(cfg, rng)
    outcome = RunOutcome()
    t0 = time.perf_counter()
    # One connection per worker, kept alive across requests and levels like a real client pool.
    connector = aiohttp.TCPConnector(limit=max(cfg.concurrency), ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
    ) as session:
        if cfg.warmup > 0:
            warm = await run_level(
                session,
                reqs.url,
                reqs.make(cfg.warmup),
                min(cfg.warmup, max(cfg.concurrency)),
                min(cfg.max_duration or cfg.request_timeout, cfg.request_timeout),
                cfg.request_timeout,
                stop,
            )
            outcome.warmup_errors = len(warm.records) - len(warm.ok)
            progress(f"warm-up: {len(warm.ok)}/{cfg.warmup} requests succeeded")
        for conc in cfg.concurrency:
            if stop is not None and stop.is_set():
                progress(f"stopped: concurrency {conc} and later levels not run")
                break
            level = await run_level(
                session,
                reqs.url,
                reqs.make(cfg.max_requests),
                conc,
                cfg.max_duration,
                cfg.request_timeout,
                stop,
            )
            outcome.levels.append(level)
            errors = {k: v for k, v in level.error_counts().items() if v}
            progress(
                f"concurrency {conc}: {len(level.ok)}/{len(level.records)} ok in {level.duration:.2f}s"
                + (f", errors {errors}" if errors else "")
            )
    outcome.duration = time.perf_counter() - t0
    return outcome
