"""Experiment reconciliation: Pending → Deploying → Benchmarking → Succeeded | Failed.

Level-based: each pass observes the engine Deployment, its pods, the benchmark Job and its pods, and
:func:`decide` computes the next status and the objects to create or delete from them alone (no memory
between passes). Objects are created *before* the status that records them is written, and deleted
before a terminal status is written, so a kill at any moment leaves a state the next pass completes:
creates are idempotent (409 = done), deletes of missing objects are no-ops.

Outcome rules (documented for users):

- ``Succeeded`` / ``Completed``: the benchmark measured a result meeting every hard SLO (soft SLO
  violations only lower the score).
- ``Succeeded`` / ``SLOViolated`` with ``feasible: false``: the benchmark ran and its metrics are valid,
  but a hard SLO was violated. It is a measured, infeasible configuration — shown in the results and
  learned from by the search, but never the best, and it does not count against ``maxFailedExperiments``
  (which bounds broken runs: crashes, OOM, timeouts).
- ``Failed`` with DeployTimeout, EngineCrashed, OutOfMemory, ImagePullFailed, Unschedulable,
  BenchmarkFailed, Timeout or Cancelled and a message taken from the container or Job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from autotuner.core.crd.common import ConditionStatus, parse_duration
from autotuner.core.crd.experiment import (
    TERMINAL_PHASES,
    ExperimentPhase,
    ExperimentReason,
    ExperimentSpec,
    ExperimentStatus,
)
from autotuner.operator import classify, conditions, resources
from autotuner.operator.cache import WatchCache
from autotuner.operator.engines import EngineSpecError
from autotuner.operator.kube import DEPLOYMENTS, EXPERIMENTS, JOBS, PODS, SERVICES, Kube, Resource
from autotuner.operator.scoring import score
from autotuner.operator.settings import OperatorSettings

Obj = dict[str, Any]
T = TypeVar("T")
EmitEvent = Callable[[Obj, str, str, str], None]
"""(object, "Normal" | "Warning", reason, message): posts a Kubernetes Event."""


@dataclass
class Observed:
    deployment: Obj | None = None
    service: Obj | None = None
    engine_pods: list[Obj] = field(default_factory=list)
    job: Obj | None = None
    job_pods: list[Obj] = field(default_factory=list)
    max_node_gpus: int | None = None
    """Most GPUs any node can offer (allocatable); None when unknown (nodes not readable)."""


@dataclass
class Plan:
    status: ExperimentStatus
    creates: list[tuple[Resource, Obj]] = field(default_factory=list)
    deletes: list[tuple[Resource, str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status.phase in TERMINAL_PHASES


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _engine_deletes(name: str) -> list[tuple[Resource, str]]:
    return [(DEPLOYMENTS, name), (SERVICES, name)]


def _finish(
    plan: Plan,
    name: str,
    now: datetime,
    generation: int | None,
    phase: ExperimentPhase,
    reason: ExperimentReason,
    message: str,
) -> Plan:
    """End the experiment: free the engine (GPUs are scarce) and record why."""
    s = plan.status
    s.phase = phase
    s.reason = reason
    s.message = message[:4096]
    s.completionTime = now
    if s.feasible is None:
        s.feasible = False
    s.conditions = conditions.set_condition(
        s.conditions, conditions.READY, ConditionStatus.FALSE, "EngineReleased",
        "the engine was deleted when the experiment ended", now=now, generation=generation,
    )  # fmt: skip
    failed = phase == ExperimentPhase.FAILED
    s.conditions = conditions.set_condition(
        s.conditions, conditions.FAILED, ConditionStatus.TRUE if failed else ConditionStatus.FALSE,
        str(reason), message if failed else "", now=now, generation=generation,
    )  # fmt: skip
    plan.deletes += _engine_deletes(name)
    plan.events.append(("Warning" if failed else "Normal", str(reason), message[:1024]))
    return plan


def decide(
    experiment: Obj, spec: ExperimentSpec, observed: Observed, now: datetime, settings: OperatorSettings
) -> Plan:
    """The next status and the object changes, from the experiment and what exists (pure)."""
    meta = experiment["metadata"]
    name: str = meta["name"]
    generation = meta.get("generation")
    status = ExperimentStatus.model_validate(experiment.get("status") or {})
    plan = Plan(status=status.model_copy(deep=True))
    phase = status.phase or ExperimentPhase.PENDING
    if phase in TERMINAL_PHASES:
        # Whoever ended it (this reconciler, or the task cancelling it), the engine must be gone.
        if observed.deployment is not None or observed.service is not None:
            plan.deletes += _engine_deletes(name)
        return plan

    created = parse_time(meta.get("creationTimestamp")) or now
    timeout = parse_duration(spec.timeout).total_seconds()
    elapsed = (now - created).total_seconds()
    if elapsed > timeout:
        return _finish(plan, name, now, generation, ExperimentPhase.FAILED, ExperimentReason.TIMEOUT,
                       f"experiment exceeded its timeout of {spec.timeout} while {phase}")  # fmt: skip

    if phase == ExperimentPhase.PENDING:
        try:
            gpus = resources.engine_gpus(spec)
            deployment = resources.deployment(experiment, spec, settings)
        except EngineSpecError as error:
            return _finish(plan, name, now, generation, ExperimentPhase.FAILED,
                           ExperimentReason.ENGINE_CRASHED, f"invalid engine flags: {error}")  # fmt: skip
        if observed.max_node_gpus is not None and gpus > observed.max_node_gpus:
            return _finish(plan, name, now, generation, ExperimentPhase.FAILED,
                           ExperimentReason.UNSCHEDULABLE,
                           f"the engine needs {gpus} GPUs but the largest node offers {observed.max_node_gpus}")  # fmt: skip
        plan.creates += [(DEPLOYMENTS, deployment), (SERVICES, resources.service(experiment, spec, settings))]
        plan.status.phase = ExperimentPhase.DEPLOYING
        plan.status.startTime = now
        plan.status.engine = name
        plan.status.gpus = gpus
        plan.events.append(("Normal", "Deploying", f"deploying the engine ({gpus} GPU(s)): {spec.summary}"))
        return plan

    if phase == ExperimentPhase.DEPLOYING:
        if observed.deployment is None or observed.service is None:
            # Recreate what is missing (deleted by hand, or never created before a crash).
            plan.creates += [(DEPLOYMENTS, resources.deployment(experiment, spec, settings)),
                             (SERVICES, resources.service(experiment, spec, settings))]  # fmt: skip
            return plan
        if classify.deployment_available(observed.deployment):
            job = resources.job(experiment, spec, settings, deadline_seconds=int(timeout - elapsed) + 1)
            plan.creates.append((JOBS, job))
            plan.status.phase = ExperimentPhase.BENCHMARKING
            plan.status.readyTime = now
            plan.status.benchmarkStartTime = now
            plan.status.benchmarkJob = job["metadata"]["name"]
            plan.status.conditions = conditions.set_condition(
                plan.status.conditions, conditions.READY, ConditionStatus.TRUE, "EngineReady",
                "the engine answers its health check", now=now, generation=generation,
            )  # fmt: skip
            ready_after = (now - (status.startTime or created)).total_seconds()
            plan.events.append(
                ("Normal", "Benchmarking", f"engine ready after {ready_after:.1f}s; benchmark started")
            )
            return plan
        failure = classify.engine_failure(
            observed.engine_pods, now=now, unschedulable_grace=settings.unschedulable_grace
        )
        if failure is not None:
            return _finish(
                plan, name, now, generation, ExperimentPhase.FAILED, failure.reason, failure.message
            )
        readiness = parse_duration(spec.engine.readinessTimeout).total_seconds()
        if (now - (status.startTime or created)).total_seconds() > readiness:
            return _finish(plan, name, now, generation, ExperimentPhase.FAILED,
                           ExperimentReason.DEPLOY_TIMEOUT,
                           f"the engine was not ready within readinessTimeout {spec.engine.readinessTimeout}"
                           f"{_pod_summary(observed.engine_pods)}")  # fmt: skip
        return plan

    # Benchmarking.
    if observed.job is None:
        job = resources.job(experiment, spec, settings, deadline_seconds=int(timeout - elapsed) + 1)
        plan.creates.append((JOBS, job))
        return plan
    finished = classify.job_finished(observed.job)
    engine_failure = classify.engine_failure(
        observed.engine_pods, now=now, unschedulable_grace=settings.unschedulable_grace
    )
    if finished is None:
        if engine_failure is not None:
            plan.deletes.append((JOBS, observed.job["metadata"]["name"]))
            return _finish(plan, name, now, generation, ExperimentPhase.FAILED, engine_failure.reason,
                           f"during the benchmark: {engine_failure.message}")  # fmt: skip
        return plan
    outcome = classify.benchmark_outcome(observed.job, observed.job_pods)
    if outcome.result is None:
        if engine_failure is not None:
            return _finish(plan, name, now, generation, ExperimentPhase.FAILED, engine_failure.reason,
                           f"during the benchmark: {engine_failure.message}")  # fmt: skip
        message = outcome.failure or "the benchmark failed"
        reason = ExperimentReason.BENCHMARK_FAILED
        if "DeadlineExceeded" in classify.job_failure_message(observed.job):
            reason = ExperimentReason.TIMEOUT
            message = f"the benchmark did not finish within the experiment timeout {spec.timeout}"
        return _finish(plan, name, now, generation, ExperimentPhase.FAILED, reason, message)
    result = outcome.result
    scored = score(result.metrics, spec.objective, spec.slo)
    plan.status.metrics = dict(result.metrics)
    plan.status.objective = scored.objective
    plan.status.score = scored.score
    plan.status.feasible = scored.feasible
    objective_text = f"{spec.objective.metric}={scored.objective:.4g}" if scored.objective is not None else ""
    if not scored.feasible:
        return _finish(plan, name, now, generation, ExperimentPhase.SUCCEEDED, ExperimentReason.SLO_VIOLATED,
                       f"infeasible: {'; '.join(scored.violations)} ({objective_text})")  # fmt: skip
    detail = f"; soft SLO violations: {'; '.join(scored.violations)}" if scored.violations else ""
    return _finish(plan, name, now, generation, ExperimentPhase.SUCCEEDED, ExperimentReason.COMPLETED,
                   f"{objective_text}, score {scored.score:.4g}{detail}")  # fmt: skip


def _pod_summary(pods: list[Obj]) -> str:
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "waiting" in state:
                return f"; container waiting: {state['waiting'].get('reason', '')}"
            if "running" in state:
                return "; container running but not ready"
        return f"; pod {status.get('phase', 'Pending')}"
    return "; no engine pod"


async def max_node_gpus(kube: Kube, resource_name: str) -> int | None:
    try:
        from autotuner.operator.kube import NODES

        nodes = await kube.list(NODES, None)
    except Exception:  # no RBAC for nodes: the scheduler will say Unschedulable instead
        return None
    best = 0
    for node in nodes:
        value = ((node.get("status") or {}).get("allocatable") or {}).get(resource_name, "0")
        try:
            best = max(best, int(value))
        except ValueError:
            continue
    return best


NodeGpus = Callable[[str], Awaitable[int | None]]
"""The most GPUs of a resource name any node offers (see :func:`max_node_gpus`), possibly cached."""


async def observe(
    kube: Kube, experiment: Obj, gpu_resource: str, node_gpus: NodeGpus | None = None
) -> Observed:
    """What exists, read from the API server."""
    meta = experiment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    phase = (experiment.get("status") or {}).get("phase") or ExperimentPhase.PENDING
    observed = Observed()
    if phase == ExperimentPhase.PENDING:
        observed.max_node_gpus = await (node_gpus or (lambda r: max_node_gpus(kube, r)))(gpu_resource)
        return observed
    # Independent reads go out together: on a busy API server each costs a round trip.
    engine_labels = {resources.LABEL_EXPERIMENT: name, resources.LABEL_ROLE: resources.ROLE_ENGINE}
    active = phase not in TERMINAL_PHASES
    benchmarking = phase == ExperimentPhase.BENCHMARKING
    observed.deployment, observed.service, pods, observed.job = await asyncio.gather(
        kube.get(DEPLOYMENTS, namespace, name),
        kube.get(SERVICES, namespace, name),
        kube.list(PODS, namespace, labels=engine_labels) if active else _nothing([]),
        kube.get(JOBS, namespace, resources.job_name(name)) if benchmarking else _nothing(None),
    )
    observed.engine_pods = pods
    if benchmarking and observed.job is not None and classify.job_finished(observed.job) is not None:
        observed.job_pods = await kube.list(PODS, namespace, labels={"job-name": resources.job_name(name)})
    return observed


async def _nothing(value: T) -> T:
    return value


def observe_cached(cache: WatchCache, experiment: Obj) -> Observed:
    """What the watch streams last said exists (no API call; see :mod:`.cache`)."""
    meta = experiment["metadata"]
    owned = cache.owned(meta["namespace"], meta["name"])
    return Observed(
        deployment=owned.deployment,
        service=owned.service,
        engine_pods=owned.engine_pods(),
        job=owned.job,
        job_pods=owned.job_pods(meta["name"]),
    )


def idle(experiment: Obj, plan: Plan) -> bool:
    """The plan changes nothing: no object to create or delete, the same status."""
    new_status = plan.status.to_k8s()
    unchanged = new_status == (experiment.get("status") or {}) or (not plan.status.phase and not new_status)
    return unchanged and not plan.creates and not plan.deletes


_CACHED_KINDS = {DEPLOYMENTS.plural: "deployment", SERVICES.plural: "service", JOBS.plural: "job"}


async def apply(
    kube: Kube, experiment: Obj, plan: Plan, emit: EmitEvent, cache: WatchCache | None = None
) -> Obj:
    """Create, delete, then write the status (optimistic lock on resourceVersion); returns the new object."""
    namespace = experiment["metadata"]["namespace"]
    made = await asyncio.gather(*(kube.create(resource, namespace, body) for resource, body in plan.creates))
    for (resource, _), obj in zip(plan.creates, made, strict=True):
        if obj is not None and cache is not None:
            cache.put_owned(_CACHED_KINDS.get(resource.plural, ""), obj, deleted=False)
    await asyncio.gather(*(kube.delete(resource, namespace, name) for resource, name in plan.deletes))
    new_status = plan.status.to_k8s()
    if idle(experiment, plan) or new_status == (experiment.get("status") or {}):
        return experiment
    updated = await kube.patch_merge(
        EXPERIMENTS,
        namespace,
        experiment["metadata"]["name"],
        {"metadata": {"resourceVersion": experiment["metadata"]["resourceVersion"]}, "status": new_status},
        sub="status",
    )
    for type_, reason, message in plan.events:
        emit(experiment, type_, reason, message)
    return updated


async def reconcile(
    kube: Kube,
    experiment: Obj,
    settings: OperatorSettings,
    now: datetime,
    emit: EmitEvent,
    *,
    cache: WatchCache | None = None,
    node_gpus: NodeGpus | None = None,
) -> Obj:
    """One pass; returns the experiment as written (``experiment`` itself when nothing changed).

    With ``cache``, the pass decides on what the watch streams said. A decision that would end the
    experiment is made again on objects read from the API server (a Job's completion and its pod's
    termination message arrive on different streams; a readiness timeout must not fire on a stale
    view of the engine). Forward steps (deploy, start the benchmark) act on the cache: phases only
    move forward, creates are idempotent and the status write is guarded by the resourceVersion.
    So the frequent passes that find nothing to do cost no API call.
    """
    spec = ExperimentSpec.model_validate(experiment["spec"])
    gpu_resource = spec.engine.resources.gpuResourceName
    phase = (experiment.get("status") or {}).get("phase")
    if cache is not None and phase not in (None, ExperimentPhase.PENDING):  # Pending reads node GPUs
        plan = decide(experiment, spec, observe_cached(cache, experiment), now, settings)
        if idle(experiment, plan):
            return experiment
        if not plan.terminal:
            return await apply(kube, experiment, plan, emit, cache)
    observed = await observe(kube, experiment, gpu_resource, node_gpus)
    plan = decide(experiment, spec, observed, now, settings)
    return await apply(kube, experiment, plan, emit, cache)
