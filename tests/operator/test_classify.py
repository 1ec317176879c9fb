"""Engine start-up failures and runner results read from pod and Job status (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from autotuner.core.crd.experiment import ExperimentReason
from autotuner.operator import classify

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def pod(
    container: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if container is not None:
        status["containerStatuses"] = [{"name": "engine", "image": "img:1", **container}]
    return {"metadata": {"name": "p"}, "status": status}


@pytest.mark.parametrize(
    ("container", "reason", "text"),
    [
        (
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}},
            ExperimentReason.IMAGE_PULL_FAILED,
            "img:1",
        ),
        (
            {
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            },
            ExperimentReason.OUT_OF_MEMORY,
            "OOMKilled",
        ),
        (
            {
                "restartCount": 1,
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "message": "torch.OutOfMemoryError: CUDA out of memory",
                    }
                },
            },
            ExperimentReason.OUT_OF_MEMORY,
            "CUDA out of memory",
        ),
        (
            {
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {"exitCode": 1, "reason": "Error", "message": "ValueError: bad flag"}
                },
            },
            ExperimentReason.ENGINE_CRASHED,
            "ValueError: bad flag",
        ),
    ],
    ids=["image_pull", "oom_killed", "oom_message", "crash"],
)
def test_engine_failures_are_classified_with_the_containers_message(
    container: dict[str, Any], reason: ExperimentReason, text: str
) -> None:
    failure = classify.engine_failure([pod(container)], now=NOW, unschedulable_grace=60)
    assert failure is not None
    assert failure.reason == reason
    assert text in failure.message


def test_unschedulable_is_a_failure_only_after_the_grace_period() -> None:
    since = (NOW - timedelta(seconds=30)).isoformat()
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/4 nodes have enough nvidia.com/gpu", "lastTransitionTime": since}  # fmt: skip
    assert classify.engine_failure([pod(None, [condition])], now=NOW, unschedulable_grace=60) is None
    failure = classify.engine_failure([pod(None, [condition])], now=NOW, unschedulable_grace=10)
    assert failure is not None and failure.reason == ExperimentReason.UNSCHEDULABLE
    assert "nvidia.com/gpu" in failure.message


def test_a_starting_engine_is_not_a_failure() -> None:
    running = pod({"state": {"running": {"startedAt": "x"}}, "ready": False})
    assert classify.engine_failure([running], now=NOW, unschedulable_grace=60) is None


RESULT = ('{"version":1,"tool":"builtin","scenario":"D(8,8)","metrics":{"output_throughput":100.0},'
          '"requests":10,"duration":1.0}')  # fmt: skip


def job_pod(code: int, message: str) -> dict[str, Any]:
    terminated = {"exitCode": code, "message": message, "finishedAt": "2025-01-01T00:00:00Z"}
    return {
        "metadata": {},
        "status": {"containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}]},
    }


def test_runner_result_is_read_from_the_last_line_of_the_termination_message() -> None:
    outcome = classify.benchmark_outcome({}, [job_pod(0, "warming up\n" + RESULT)])
    assert outcome.failure is None and outcome.result is not None
    assert outcome.result.metrics == {"output_throughput": 100.0}


@pytest.mark.parametrize(
    ("code", "message", "text"),
    [
        (
            2,
            RESULT.replace('"requests":10', '"requests":10,"errors":{"http":10}'),
            "0 of 10 requests succeeded",
        ),
        (1, "Traceback: boom", "without a result: Traceback: boom"),
        (
            0,
            RESULT.replace('"duration":1.0', '"duration":1.0,"error":"genai-bench is not installed"'),
            "could not measure: genai-bench is not installed",
        ),
    ],
    ids=["no_request_succeeded", "crash_without_json", "tool_missing"],
)
def test_benchmark_failures_say_why(code: int, message: str, text: str) -> None:
    outcome = classify.benchmark_outcome({}, [job_pod(code, message)])
    assert outcome.result is None
    assert outcome.failure is not None and text in outcome.failure
