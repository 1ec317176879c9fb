"""Reading what happened from pod and Job status: engine start-up failures and the runner's result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autotuner.core.crd.experiment import ExperimentReason
from autotuner.runner.result import RunnerResult
from pydantic import ValidationError

Obj = dict[str, Any]

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# How engines report running out of GPU memory at start-up (PyTorch, SGLang, vLLM, the simulator).
_OOM_TEXT = re.compile(r"out of memory|outofmemory|not enough memory|\boom\b", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    reason: ExperimentReason
    message: str


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _terminated_failure(name: str, terminated: Obj, restarts: int) -> Failure:
    reason = str(terminated.get("reason") or "")
    message = str(terminated.get("message") or "").strip()
    code = terminated.get("exitCode")
    detail = f"container {name} exited with code {code}" + (f" ({reason})" if reason else "")
    if restarts:
        detail += f" after {restarts} restart(s)"
    if message:
        detail += f": {message[-1500:]}"
    if reason == "OOMKilled" or _OOM_TEXT.search(message):
        return Failure(ExperimentReason.OUT_OF_MEMORY, detail)
    return Failure(ExperimentReason.ENGINE_CRASHED, detail)


def engine_failure(pods: list[Obj], *, now: datetime, unschedulable_grace: float) -> Failure | None:
    """Why the engine cannot start, from its pods' status, or None while it may still come up.

    A container that has terminated even once counts: engines fail at start-up deterministically (bad
    flag, OOM), so waiting through CrashLoopBackOff's growing delays would only burn GPU time.
    """
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            name = container.get("name", "engine")
            state = container.get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_REASONS:
                image = container.get("image", "")
                return Failure(
                    ExperimentReason.IMAGE_PULL_FAILED,
                    f"image {image} cannot be pulled ({waiting['reason']}): {waiting.get('message', '')}".strip(),
                )
            restarts = int(container.get("restartCount") or 0)
            terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
            if terminated:
                return _terminated_failure(name, terminated, restarts)
            if waiting.get("reason") == "CrashLoopBackOff":
                return Failure(
                    ExperimentReason.ENGINE_CRASHED,
                    f"container {name} is crash-looping: {waiting.get('message', '')}".strip(),
                )
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                since = _parse_time(condition.get("lastTransitionTime")) or now
                if (now - since).total_seconds() >= unschedulable_grace:
                    return Failure(
                        ExperimentReason.UNSCHEDULABLE,
                        f"engine pod cannot be scheduled: {condition.get('message', '')}".strip(),
                    )
    return None


def deployment_available(deployment: Obj | None) -> bool:
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    if int(status.get("availableReplicas") or 0) < 1:
        return False
    # Available replicas of an older template do not count (the template is never changed, but be exact).
    return int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)


def job_finished(job: Obj) -> bool | None:
    """True when the Job succeeded, False when it failed, None while it runs."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True
        if condition.get("type") == "Failed":
            return False
    return None


def job_failure_message(job: Obj) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return "the benchmark Job failed"


@dataclass(frozen=True)
class BenchmarkOutcome:
    result: RunnerResult | None
    """The parsed result when the runner measured something."""
    failure: str | None
    """Why there is no usable result."""


def runner_termination(pods: list[Obj]) -> tuple[int, str] | None:
    """(exit code, termination message) of the runner container of the Job's last terminated pod."""
    found: tuple[str, int, str] | None = None
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                key = str(terminated.get("finishedAt") or "")
                if found is None or key >= found[0]:
                    found = (key, int(terminated.get("exitCode") or 0), str(terminated.get("message") or ""))
    return (found[1], found[2]) if found else None


def benchmark_outcome(job: Obj, pods: list[Obj]) -> BenchmarkOutcome:
    """The runner's result from its termination message (its last line is the compact JSON)."""
    termination = runner_termination(pods)
    if termination is None:
        return BenchmarkOutcome(
            None,
            job_failure_message(job)
            if job_finished(job) is False
            else "the benchmark pod left no termination message",
        )
    code, message = termination
    lines = [line for line in message.strip().splitlines() if line.strip()]
    result: RunnerResult | None = None
    if lines:
        try:
            result = RunnerResult.model_validate_json(lines[-1])
        except ValidationError:
            result = None
    if result is None:
        tail = message.strip()[-1000:] or "(empty)"
        return BenchmarkOutcome(None, f"runner exited with code {code} without a result: {tail}")
    if result.error:
        return BenchmarkOutcome(None, f"runner could not measure: {result.error}")
    if code != 0 or result.succeeded == 0:
        return BenchmarkOutcome(
            None,
            f"runner exited with code {code}: {result.succeeded} of {result.requests} requests succeeded "
            f"(errors: {result.errors.model_dump()})",
        )
    return BenchmarkOutcome(result, None)
