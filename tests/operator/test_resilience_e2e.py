"""Kill the operator, stop Redis, suspend, delete, run two namespaces: the task still ends right."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from autotuner.devtools.redis_server import RedisServer
from autotuner.operator.kube import TASKS, Kube

from tests.operator.support import (
    create_task,
    engines_left,
    experiments,
    get_task,
    jobs,
    task_manifest,
    wait_task_phase,
)
from tests.operator.test_tuning_e2e import (
    assert_exactly_once_in_order,
    assert_experiment_lifecycles,
    published_events,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.redis]

KILL_SPEC = {
    # Configurations whose throughput per GPU differs by >= 1.4x (max-running-requests 1 vs 4 at
    # concurrency 16; tp-size 2 halves the per-GPU figure), and an out-of-memory region (a memory
    # fraction that cannot hold the weights): TPE's proposals depend only on the order of the scores
    # and on which runs failed, so timing noise must not reorder them. At time-scale 1 the
    # simulator's step times (real sleeps) dominate the measurement, not the CPU it gets on a loaded
    # machine; at 0.01-0.1 the HTTP overhead does, and a starved experiment can lose 1.4x.
    "engine": {"args": {"time-scale": 1.0}},
    "searchSpace": [
        {"name": "tp-size", "values": [1, 2]},
        {"name": "max-running-requests", "values": [1, 4]},
        {"name": "mem-fraction-static", "values": [0.02, 0.8]},
    ],
    "objective": {"metric": "output_throughput_per_gpu", "direction": "maximize"},
    "strategy": {"algorithm": "bayesian", "seed": 11, "initialRandom": 2},
    "budget": {"maxExperiments": 6, "parallelism": 1, "experimentTimeout": "2m", "maxFailedExperiments": 6},
    "benchmark": {"concurrency": [16], "scenarios": ["D(64,16)"], "maxRequests": 16, "warmup": 0},
}


def _run(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """What a run produced, in index order: parameters, phase, reason."""
    return [
        (json.dumps(e["spec"]["parameters"], sort_keys=True), e["status"]["phase"], e["status"]["reason"])
        for e in items
    ]


async def test_operator_killed_at_random_moments_produces_the_same_experiments_and_best_as_an_uninterrupted_run(
    kube: Kube, namespace: str, second_namespace: str, executor: Any, start_operator: Any, redis_url: str
) -> None:
    # The same task twice, side by side: uninterrupted in one namespace, SIGKILLed in the other.
    start_operator(namespace=second_namespace)
    await create_task(kube, second_namespace, task_manifest("killed", KILL_SPEC))
    operator = start_operator(namespace=namespace, redis_url=redis_url)
    await create_task(kube, namespace, task_manifest("killed", KILL_SPEC))
    rng = random.Random(5)
    while operator.kills < 6:
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        operator.kill()
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        operator.start()
    task = await wait_task_phase(kube, namespace, "killed", {"Succeeded", "Failed"}, within=180)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("conditions")
    items = await experiments(kube, namespace, "killed")
    assert [e["spec"]["index"] for e in items] == list(range(6))
    assert len({json.dumps(e["spec"]["parameters"], sort_keys=True) for e in items}) == 6

    reference = await wait_task_phase(kube, second_namespace, "killed", {"Succeeded", "Failed"}, within=120)
    uninterrupted = await experiments(kube, second_namespace, "killed")
    assert _run(items) == _run(uninterrupted), (
        "the killed run chose differently from the uninterrupted one: "
        f"{[e['status'].get('score') for e in items]} vs {[e['status'].get('score') for e in uninterrupted]}"
    )
    assert any(e["status"]["reason"] == "OutOfMemory" for e in items), "the OOM region was never explored"
    for key in ("experiment", "parameters"):
        assert status["best"][key] == reference["status"]["best"][key]
    best = max((e for e in items if e["status"].get("feasible")), key=lambda e: e["status"]["score"])
    assert status["best"]["experiment"] == best["metadata"]["name"]

    # No orphans: engines freed, each Job belongs to an existing experiment.
    await wait_for(lambda: _no_engines(kube, namespace), within=30, what="engines to be freed")
    names = {e["metadata"]["name"] for e in items}
    assert {j["metadata"]["name"].removesuffix("-bench") for j in await jobs(kube, namespace)} <= names

    events = await wait_for(lambda: published_events(kube, redis_url, namespace, "killed"), within=30,
                            what="every event to be published")  # fmt: skip
    assert_exactly_once_in_order(events, (await get_task(kube, namespace, "killed"))["status"])
    assert_experiment_lifecycles(events, sorted(names))


async def _no_engines(kube: Kube, namespace: str) -> bool:
    return await engines_left(kube, namespace) == []


async def test_redis_restarted_with_its_data_gets_every_transition_exactly_once_in_order(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    redis = RedisServer(appendonly=True).start()
    try:
        start_operator(namespace=namespace, redis_url=redis.url)
        spec = {"budget": {"maxExperiments": 4, "parallelism": 2}}
        await create_task(kube, namespace, task_manifest("outage", spec))

        async def started() -> bool:
            return len(await experiments(kube, namespace, "outage")) >= 1

        await wait_for(started, within=60, what="the first experiment")
        redis.stop()

        async def outbox_grew() -> bool:
            status = (await get_task(kube, namespace, "outage")).get("status") or {}
            return len(status.get("outbox") or []) >= 3

        await wait_for(outbox_grew, within=60, what="transitions to queue in the outbox while Redis is down")
        redis.start()
        task = await wait_task_phase(kube, namespace, "outage", {"Succeeded", "Failed"}, within=120)
        assert task["status"]["phase"] == "Succeeded"
        events = await wait_for(lambda: published_events(kube, redis.url, namespace, "outage"), within=30,
                                what="the outbox to drain")  # fmt: skip
        assert_exactly_once_in_order(events, (await get_task(kube, namespace, "outage"))["status"])
        names = [e["metadata"]["name"] for e in await experiments(kube, namespace, "outage")]
        assert_experiment_lifecycles(events, names)
        assert events[-1]["type"] == "task_completed"
    finally:
        redis.stop()


async def test_suspended_task_lets_running_experiments_finish_and_resumes_where_it_stopped(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    await create_task(
        kube, namespace, task_manifest("pause", {"budget": {"maxExperiments": 3, "parallelism": 1}})
    )

    async def first_created() -> bool:
        return len(await experiments(kube, namespace, "pause")) == 1

    await wait_for(first_created, within=60, what="the first experiment")
    await kube.patch_merge(TASKS, namespace, "pause", {"spec": {"suspend": True}})
    task = await wait_task_phase(kube, namespace, "pause", {"Suspended"}, within=60)
    [only] = await experiments(kube, namespace, "pause")
    assert only["status"]["phase"] == "Succeeded", "the running experiment should finish normally"
    assert task["status"]["progress"] == "1/3"
    suspended = next(c for c in task["status"]["conditions"] if c["type"] == "Suspended")
    assert suspended["status"] == "True"

    await kube.patch_merge(TASKS, namespace, "pause", {"spec": {"suspend": False}})
    task = await wait_task_phase(kube, namespace, "pause", {"Succeeded"}, within=90)
    assert [e["spec"]["index"] for e in await experiments(kube, namespace, "pause")] == [0, 1, 2]


async def test_deleting_a_task_removes_every_object_it_owns(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    await create_task(
        kube, namespace, task_manifest("doomed", {"budget": {"maxExperiments": 4, "parallelism": 2}})
    )

    async def benchmarking() -> bool:
        return any((e.get("status") or {}).get("phase") == "Benchmarking"
                   for e in await experiments(kube, namespace, "doomed"))  # fmt: skip

    await wait_for(benchmarking, within=60, what="an experiment to be benchmarking")
    await kube.delete(TASKS, namespace, "doomed")

    async def all_gone() -> bool:
        return (
            await experiments(kube, namespace) == []
            and await engines_left(kube, namespace) == []
            and await jobs(kube, namespace) == []
        )

    await wait_for(all_gone, within=60, what="the garbage collector to remove experiments, engines and jobs")


async def test_two_tasks_in_two_namespaces_run_side_by_side(
    kube: Kube, namespace: str, second_namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=None)  # cluster-wide
    for ns in (namespace, second_namespace):
        await create_task(
            kube, ns, task_manifest("same-name", {"budget": {"maxExperiments": 2, "parallelism": 2}})
        )
    for ns in (namespace, second_namespace):
        task = await wait_task_phase(kube, ns, "same-name", {"Succeeded", "Failed"}, within=120)
        assert task["status"]["phase"] == "Succeeded"
        assert [e["metadata"]["name"] for e in await experiments(kube, ns)] == [
            "same-name-0000",
            "same-name-0001",
        ]
