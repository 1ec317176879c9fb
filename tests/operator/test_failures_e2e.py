"""Failure paths end to end: each ends with the right phase, reason and message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from autotuner.operator.kube import TASKS, Kube

from tests.operator.support import create_task, engines_left, experiments, task_manifest, wait_task_phase
from tests.waiting import wait_for

pytestmark = [pytest.mark.cluster]

NEVER_READY = {"engine": {"args": {"time-scale": 0.01, "startup-delay": 600}, "readinessTimeout": "3s"}}


@dataclass
class ExperimentCase:
    spec: dict[str, Any]
    phase: str
    reason: str
    message: str
    task_reason: str
    annotations: dict[str, str] = field(default_factory=dict)


EXPERIMENT_CASES = {
    "engine_never_ready_fails_with_deploy_timeout": ExperimentCase(
        NEVER_READY, "Failed", "DeployTimeout", "readinessTimeout 3s", "NoFeasibleExperiment"
    ),
    "engine_out_of_memory_at_start_fails_with_out_of_memory": ExperimentCase(
        {"model": {"name": "meta-llama/Llama-3.1-70B-Instruct"}},
        "Failed", "OutOfMemory", "out of memory", "NoFeasibleExperiment",
    ),
    "benchmark_without_a_successful_request_fails_with_benchmark_failed": ExperimentCase(
        {"engine": {"args": {"time-scale": 0.01, "served-model-name": "not-the-model"}}},
        "Failed", "BenchmarkFailed", "requests succeeded", "NoFeasibleExperiment",
    ),
    "hard_slo_violation_is_measured_but_infeasible": ExperimentCase(
        {"slo": [{"metric": "ttft_p90", "max": 0.000001, "hard": True}]},
        "Succeeded", "SLOViolated", "ttft_p90", "NoFeasibleExperiment",
    ),
    "experiment_timeout_fails_with_timeout": ExperimentCase(
        {**NEVER_READY, "engine": {**NEVER_READY["engine"], "readinessTimeout": "10m"},
         "budget": {"experimentTimeout": "4s"}},
        "Failed", "Timeout", "timeout of 4s", "NoFeasibleExperiment",
    ),
    "engine_crash_loop_fails_with_engine_crashed": ExperimentCase(
        {}, "Failed", "EngineCrashed", "simulated crash", "NoFeasibleExperiment",
        annotations={"autotuner.io/sim-fault": "crash"},
    ),
    "image_that_cannot_be_pulled_fails_with_image_pull_failed": ExperimentCase(
        {}, "Failed", "ImagePullFailed", "cannot be pulled", "NoFeasibleExperiment",
        annotations={"autotuner.io/sim-fault": "image-pull"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(EXPERIMENT_CASES.values()), ids=list(EXPERIMENT_CASES))
async def test_experiment_failure_path(
    case: ExperimentCase, kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    spec = {"budget": {"maxExperiments": 1, "parallelism": 1}, **case.spec}
    if "budget" in case.spec:
        spec["budget"] = {"maxExperiments": 1, "parallelism": 1, **case.spec["budget"]}
    manifest = task_manifest("fail", spec, annotations=case.annotations)
    await create_task(kube, namespace, manifest)
    task = await wait_task_phase(kube, namespace, "fail", {"Succeeded", "Failed"}, within=120)
    [experiment] = await experiments(kube, namespace, "fail")
    status = experiment["status"]
    assert (status["phase"], status["reason"]) == (case.phase, case.reason), status.get("message")
    assert case.message in status["message"], status["message"]
    assert status["feasible"] is False
    assert status["completionTime"]
    assert task["status"]["phase"] == "Failed"
    failed = next(c for c in task["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == case.task_reason
    assert await engines_left(kube, namespace) == []


async def test_task_fails_with_too_many_failures_after_max_failed_experiments(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    spec = {**NEVER_READY, "budget": {"maxExperiments": 5, "parallelism": 1, "maxFailedExperiments": 1}}
    await create_task(kube, namespace, task_manifest("budget", spec))
    task = await wait_task_phase(kube, namespace, "budget", {"Succeeded", "Failed"}, within=120)
    failed = next(c for c in task["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "TooManyFailures"
    assert "more than maxFailedExperiments 1" in failed["message"]
    assert task["status"]["experiments"]["failed"] == 2
    assert len(await experiments(kube, namespace, "budget")) == 2


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({"searchSpace": [{"name": "tp-sise", "values": [1, 2]}]}, "UnknownEngineFlag", "'tp-sise'"),
        ({"engine": {"args": {"port": 9000}}}, "InvalidSpec", "'port' is set by the operator"),
        (
            {"searchSpace": [{"name": "tp-size", "values": [16, 32]}]},
            "Unsatisfiable",
            "needs 16 nvidia.com/gpu",
        ),
    ],
    ids=["unknown_flag", "reserved_flag", "more_gpus_than_any_node"],
)
async def test_invalid_task_fails_with_a_condition_naming_the_problem(
    spec: dict[str, Any], reason: str, message: str, kube: Kube, namespace: str, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    await create_task(kube, namespace, task_manifest("bad", spec))
    task = await wait_task_phase(kube, namespace, "bad", {"Failed"}, within=60)
    failed = next(c for c in task["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == reason
    assert message in failed["message"]
    assert failed["observedGeneration"] == task["metadata"]["generation"]
    assert await experiments(kube, namespace, "bad") == []


async def test_task_past_its_deadline_fails_and_cancels_running_experiments(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    start_operator(namespace=namespace)
    spec = {
        "engine": {"readinessTimeout": "10m"},
        "budget": {"maxExperiments": 4, "parallelism": 2, "deadline": "4s", "experimentTimeout": "10m"},
    }
    never_ready = {"autotuner.io/sim-fault": "never-ready"}  # engines that stay Deploying, no process
    await create_task(kube, namespace, task_manifest("late", spec, annotations=never_ready))
    task = await wait_task_phase(kube, namespace, "late", {"Succeeded", "Failed"}, within=60)
    failed = next(c for c in task["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert "did not finish within its deadline 4s" in failed["message"]
    cancelled = await experiments(kube, namespace, "late")
    assert len(cancelled) == 2, "no experiment may start after the deadline"
    for experiment in cancelled:
        status = experiment["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "Cancelled")
        assert status["message"] == "cancelled: the task did not finish within its deadline 4s"
    await wait_for(lambda: _no_engines(kube, namespace), within=30, what="the cancelled engines to be freed")


async def _no_engines(kube: Kube, namespace: str) -> bool:
    return await engines_left(kube, namespace) == []


async def test_engine_that_cannot_be_scheduled_fails_with_unschedulable_after_the_grace_period(
    kube: Kube, namespace: str, executor: Any, start_operator: Any
) -> None:
    # Two engines of 8 GPUs pinned to one 8-GPU node: the second can never be placed while the first
    # holds the node. Neither runs a process (the executor's never-ready hook); the grace is 1 s.
    start_operator(namespace=namespace, env={"AUTOTUNER_UNSCHEDULABLE_GRACE": "1"})
    spec = {
        "engine": {"nodeSelector": {"kubernetes.io/hostname": "gpu-node-0"}, "readinessTimeout": "10m"},
        "searchSpace": [
            {"name": "tp-size", "values": [8]},
            {"name": "mem-fraction-static", "values": [0.8, 0.9]},
        ],
        "budget": {"maxExperiments": 2, "parallelism": 2, "experimentTimeout": "10m"},
    }
    manifest = task_manifest("crowded", spec, annotations={"autotuner.io/sim-fault": "never-ready"})
    await create_task(kube, namespace, manifest)

    async def unschedulable() -> dict[str, Any] | None:
        for experiment in await experiments(kube, namespace, "crowded"):
            if (experiment.get("status") or {}).get("reason") == "Unschedulable":
                return experiment
        return None

    experiment = await wait_for(unschedulable, within=60, what="an experiment to fail as Unschedulable")
    status = experiment["status"]
    assert status["phase"] == "Failed"
    assert status["message"].startswith("engine pod cannot be scheduled:"), status["message"]
    assert "Insufficient nvidia.com/gpu" in status["message"], status["message"]
    assert status["feasible"] is False
    await kube.delete(TASKS, namespace, "crowded")  # free the node for other tests at once
