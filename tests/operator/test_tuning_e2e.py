"""End to end on the local cluster: the real operator process, the local executor running the real
simulator and runner, and a real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from autotuner.core.events import EVENT_STREAM_KEY
from autotuner.devtools.cluster import kubectl
from autotuner.operator.kube import Kube

from tests.operator.support import (
    create_task,
    engines_left,
    experiments,
    get_task,
    jobs,
    task_manifest,
    wait_task_phase,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.redis]


async def stream_events(redis_url: str, namespace: str, task: str) -> list[dict[str, Any]]:
    """Every event of one task in the stream, in stream order."""
    client = aioredis.from_url(redis_url)
    try:
        entries = await client.xrange(EVENT_STREAM_KEY)
    finally:
        await client.aclose()
    return [
        json.loads(fields[b"e"])
        for _, fields in entries
        if fields[b"ns"].decode() == namespace and fields[b"t"].decode() == task
    ]


async def published_events(
    kube: Kube, redis_url: str, namespace: str, name: str
) -> list[dict[str, Any]] | None:
    """The task's events on the stream once its outbox has drained (None while it still holds any)."""
    status = (await get_task(kube, namespace, name))["status"]
    if status.get("outbox"):
        return None
    return await stream_events(redis_url, namespace, name)


def assert_exactly_once_in_order(events: list[dict[str, Any]], status: dict[str, Any]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1)), f"seqs not 1..n exactly once: {seqs}"
    assert status.get("eventSeq") == len(events)
    assert not status.get("outbox"), "published events were not trimmed from the outbox"


def assert_experiment_lifecycles(events: list[dict[str, Any]], names: list[str]) -> None:
    """Each experiment appears as created → started → benchmark → completed|failed, each once."""
    for name in names:
        types = [e["type"] for e in events if e.get("experiment") == name]
        assert types[:1] == ["experiment_created"], (name, types)
        assert types[-1] in {"experiment_completed", "experiment_failed"}, (name, types)
        assert len(types) == len(set(types)), (name, types)


async def test_bayesian_task_succeeds_with_the_best_experiment_and_frees_every_engine(
    kube: Kube, namespace: str, executor: Any, start_operator: Any, redis_url: str, crds: str
) -> None:
    start_operator(namespace=namespace, redis_url=redis_url)
    manifest = task_manifest(
        "bayes",
        {
            "searchSpace": [
                {"name": "max-running-requests", "values": [1, 2, 4, 8, 16, 32]},
                {"name": "mem-fraction-static", "min": 0.7, "max": 0.9, "step": 0.05},
            ],
            "strategy": {"algorithm": "bayesian", "seed": 3, "initialRandom": 4},
            "budget": {"maxExperiments": 8, "parallelism": 2},
        },
    )
    await create_task(kube, namespace, manifest)

    # Watch `kubectl get att` while it runs: PROGRESS and BEST move.
    seen: set[tuple[str, str]] = set()

    async def poll_columns() -> None:
        while True:
            out = kubectl(crds, "get", "att", "bayes", "-n", namespace, "--no-headers").stdout.split()
            if len(out) >= 4:
                seen.add((out[2], out[3]))
            await asyncio.sleep(0.5)

    poller = asyncio.create_task(poll_columns())
    try:
        task = await wait_task_phase(kube, namespace, "bayes", {"Succeeded", "Failed"}, within=240)
    finally:
        poller.cancel()
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert status["progress"] == "8/8"
    assert status["experiments"] == {"total": 8, "pending": 0, "running": 0, "succeeded": 8, "failed": 0}
    assert len({p for p, _ in seen}) >= 3, f"PROGRESS did not move: {sorted(seen)}"
    assert len({b for _, b in seen if b != "<none>"}) >= 1, f"BEST never shown: {sorted(seen)}"

    items = await experiments(kube, namespace, "bayes")
    assert [e["metadata"]["name"] for e in items] == [f"bayes-{i:04d}" for i in range(8)]
    params = [json.dumps(e["spec"]["parameters"], sort_keys=True) for e in items]
    assert len(set(params)) == 8, "a configuration ran twice"
    best = max(items, key=lambda e: e["status"]["score"])
    assert status["best"]["experiment"] == best["metadata"]["name"]
    assert status["best"]["objective"] == best["status"]["objective"]
    assert status["best"]["parameters"] == best["spec"]["parameters"]
    assert status["bestObjective"] == f"{best['status']['objective']:.4g}"
    assert all(e["status"]["reason"] == "Completed" for e in items)
    assert await engines_left(kube, namespace) == []
    # The engines are gone; the benchmark Jobs stay for their logs for benchmark.jobRetention (1h).
    kept = await jobs(kube, namespace)
    assert sorted(j["metadata"]["name"] for j in kept) == [f"bayes-{i:04d}-bench" for i in range(8)]
    assert {j["spec"]["ttlSecondsAfterFinished"] for j in kept} == {3600}

    # The last transitions are published, then trimmed from the outbox, just after the phase is written.
    events = await wait_for(lambda: published_events(kube, redis_url, namespace, "bayes"), within=30,
                            what="every event to be published")  # fmt: skip
    assert_exactly_once_in_order(events, (await get_task(kube, namespace, "bayes"))["status"])
    assert_experiment_lifecycles(events, [e["metadata"]["name"] for e in items])
    assert events[0]["type"] == "task_started" and events[-1]["type"] == "task_completed"

    # `kubectl describe` tells each experiment's story through Kubernetes Events.
    async def described() -> str | None:
        text = kubectl(crds, "describe", "atx", "bayes-0000", "-n", namespace).stdout
        return text if "Completed" in text.split("Events:")[-1] else None

    story = (await wait_for(described, within=30, what="the experiment's Kubernetes Events")).split(
        "Events:"
    )[-1]
    for reason in ("Deploying", "Benchmarking", "Completed"):
        assert reason in story, story


async def test_grid_search_visits_every_point_exactly_once(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    manifest = task_manifest(
        "grid",
        {
            "searchSpace": [
                {"name": "max-running-requests", "values": [4, 16]},
                {"name": "schedule-policy", "values": ["lpm", "fcfs"]},
            ],
            "strategy": {"algorithm": "grid"},
            "budget": {"maxExperiments": 10, "parallelism": 3},
        },
    )
    await create_task(kube, namespace, manifest)
    task = await wait_task_phase(kube, namespace, "grid", {"Succeeded", "Failed"}, within=180)
    assert task["status"]["phase"] == "Succeeded"
    complete = next(c for c in task["status"]["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "SearchSpaceExhausted"
    assert task["status"]["progress"] == "4/10"
    items = await experiments(kube, namespace, "grid")
    visited = sorted((e["spec"]["parameters"]["max-running-requests"], e["spec"]["parameters"]["schedule-policy"])
                     for e in items)  # fmt: skip
    assert visited == [(4, "fcfs"), (4, "lpm"), (16, "fcfs"), (16, "lpm")]
