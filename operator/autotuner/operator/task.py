"""AutotuneTask reconciliation: the one writer of a task's status and creator of its Experiments.

One pass (:func:`reconcile`) reads the task and its Experiments, and from them alone:

1. validates what the schema cannot (flags the runtime does not know, a GPU count no node can offer)
   → phase Failed with a condition naming the problem;
2. rebuilds the searcher from the Experiments in index order (restart-safe, see :mod:`.search`);
3. stops at ``maxExperiments`` / an exhausted space (Succeeded, or Failed with NoFeasibleExperiment
   when nothing feasible was found), more than ``maxFailedExperiments`` failures (Failed,
   TooManyFailures) or the ``deadline`` (Failed, DeadlineExceeded) — running Experiments of a failed
   task are ended with reason Cancelled, which frees their engines;
4. otherwise keeps ``parallelism`` Experiments active, creating ``<task>-<index:04d>``;
5. writes status (phase, progress, counts, best, conditions, times) with the transitions' events in
   the same patch, then publishes them (see :mod:`.outbox`).

``suspend: true`` stops creating Experiments; the running ones finish normally (their results count)
and the phase becomes Suspended once none is active. ``suspend: false`` resumes where it stopped.
A finished task (Succeeded or Failed) is final: editing its spec does not restart it.
Deleting a task deletes its Experiments, and through them engines and Jobs, by garbage collection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autotuner.core.crd.common import ConditionStatus, Scalar, parse_duration
from autotuner.core.crd.experiment import TERMINAL_PHASES, ExperimentPhase, ExperimentReason, ExperimentSpec
from autotuner.core.crd.task import (
    SLO,
    AutotuneTaskSpec,
    AutotuneTaskStatus,
    BestResult,
    ExperimentCounts,
    RecordedTransitions,
    Runtime,
    TaskPhase,
)
from autotuner.core.events import TaskRef
from autotuner.core.stream import EventPublisher
from autotuner.operator import conditions as cond
from autotuner.operator import engines, outbox, resources
from autotuner.operator.experiment import max_node_gpus
from autotuner.operator.kube import EXPERIMENTS, TASKS, Kube, KubeError
from autotuner.operator.search import Outcome, Params, Searcher, SearchSpaceError, hard_excess
from autotuner.operator.settings import OperatorSettings
from pydantic import ValidationError

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
EmitEvent = Callable[[Obj, str, str, str], None]
TERMINAL_TASK = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED})


def experiment_name(task: str, index: int) -> str:
    return f"{task}-{index:04d}"


def summary(params: Params) -> str:
    text = ",".join(f"{k}={v}" for k, v in params.items())
    return text if len(text) <= 256 else text[:253] + "..."


def _min_value(parameter: Any) -> int:
    values = [v for v in (parameter.values or []) if isinstance(v, int | float) and not isinstance(v, bool)]
    if parameter.min is not None:
        values.append(parameter.min)
    return max(1, int(min(values))) if values else 1


def validate(
    spec: AutotuneTaskSpec, node_gpus: int | None, settings: OperatorSettings
) -> tuple[str, str] | None:
    """(reason, message) when the task can never run, else None."""
    try:
        engines.check_flags(spec.engine.runtime, [*spec.engine.args, *(p.name for p in spec.searchSpace)])
        Searcher(spec.searchSpace, spec.strategy)
        # The smallest configuration: every searched parallelism flag at its lowest value.
        smallest: dict[str, engines.Value] = dict(spec.engine.args)
        for parameter in spec.searchSpace:
            smallest[parameter.name] = _min_value(parameter) if _numeric(parameter) else 1
        info = engines.runtime_info(spec.engine.runtime)
        parallel = {*info.tp_flags, *info.pp_flags, *info.dp_flags}
        gpus = engines.gpu_count(
            spec.engine.runtime,
            {k: v for k, v in smallest.items() if k in parallel},
            spec.engine.resources.gpusPerEngine,
        )
    except engines.EngineSpecError as error:
        return error.reason, str(error)
    except SearchSpaceError as error:
        return cond.INVALID_SPEC, f"searchSpace: {error}"
    if len(spec.benchmark.scenarios) > 1:
        return (
            cond.INVALID_SPEC,
            "benchmark.scenarios: the runner measures one scenario per experiment; give one",
        )
    requests_gpus = spec.engine.runtime != Runtime.SIMULATOR or settings.simulator_requests_gpus
    if requests_gpus and gpus > 0 and node_gpus is not None and gpus > node_gpus:
        resource = spec.engine.resources.gpuResourceName
        return cond.UNSATISFIABLE, (
            f"the smallest configuration needs {gpus} {resource} but no node offers more than {node_gpus}"
        )
    return None


def _numeric(parameter: Any) -> bool:
    return parameter.min is not None or any(
        isinstance(v, int | float) and not isinstance(v, bool) for v in parameter.values or []
    )


def _phase(experiment: Obj) -> str:
    return str((experiment.get("status") or {}).get("phase") or ExperimentPhase.PENDING)


def history(experiments: list[Obj], slos: Sequence[SLO] = ()) -> list[tuple[Params, Outcome | None]]:
    """What the searcher is told, in experiment order; a near miss of a hard SLO carries its excess."""
    out: list[tuple[Params, Outcome | None]] = []
    for experiment in experiments:
        status = experiment.get("status") or {}
        params: Params = dict(experiment["spec"]["parameters"])
        phase = _phase(experiment)
        if phase not in TERMINAL_PHASES:
            out.append((params, None))
        elif phase == ExperimentPhase.SUCCEEDED and status.get("score") is not None:
            feasible = bool(status.get("feasible"))
            excess = None if feasible else hard_excess(status.get("metrics") or {}, slos)
            out.append((params, Outcome(score=float(status["score"]), feasible=feasible, excess=excess)))
        else:
            out.append((params, Outcome.failed()))
    return out


def best_of(experiments: list[Obj]) -> BestResult | None:
    best: Obj | None = None
    for experiment in experiments:
        status = experiment.get("status") or {}
        if _phase(experiment) != ExperimentPhase.SUCCEEDED or not status.get("feasible"):
            continue
        if status.get("score") is None or status.get("objective") is None:
            continue
        if best is None or float(status["score"]) > float(best["status"]["score"]):
            best = experiment
    if best is None:
        return None
    return BestResult(
        experiment=best["metadata"]["name"],
        parameters=best["spec"]["parameters"],
        objective=float(best["status"]["objective"]),
        score=float(best["status"]["score"]),
        metrics=best["status"].get("metrics") or {},
    )


def format_objective(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class PassResult:
    idle: bool
    """Nothing more will happen without a change (finished task, outbox empty, nothing active)."""
    written: Obj | None = None
    """The task as this pass's last status write left it (None: nothing written), so the watch
    event that echoes the write need not wake another pass."""


def new_experiment(task: Obj, spec: AutotuneTaskSpec, index: int, params: Params) -> Obj:
    meta = task["metadata"]
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k.startswith(resources.SIM_ANNOTATION_PREFIX)
    }
    exp_spec = ExperimentSpec.model_validate(
        {
            "taskRef": {"name": meta["name"]},
            "index": index,
            "parameters": params,
            "summary": summary(params),
            "model": spec.model,
            "engine": spec.engine,
            "benchmark": spec.benchmark,
            "objective": spec.objective,
            "slo": spec.slo,
            "timeout": spec.budget.experimentTimeout,
        }
    )
    return {
        "apiVersion": "autotuner.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {
            "name": experiment_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": {resources.LABEL_TASK: meta["name"]},
            "annotations": annotations,
            "ownerReferences": [resources.owner_reference(task)],
        },
        "spec": exp_spec.to_k8s(),
    }


async def _cancel(kube: Kube, experiment: Obj, message: str, now: datetime) -> Obj:
    """End an active experiment of a finished task; its reconciler then frees the engine."""
    status = {
        "phase": ExperimentPhase.FAILED,
        "reason": ExperimentReason.CANCELLED,
        "message": message[:4096],
        "feasible": False,
        "completionTime": now.isoformat().replace("+00:00", "Z"),
    }
    try:
        return await kube.patch_merge(
            EXPERIMENTS,
            experiment["metadata"]["namespace"],
            experiment["metadata"]["name"],
            {"metadata": {"resourceVersion": experiment["metadata"]["resourceVersion"]}, "status": status},
            sub="status",
        )
    except KubeError as error:
        if error.conflict or error.not_found:
            return experiment  # it moved on; the next pass sees where it went
        raise


async def reconcile(
    kube: Kube,
    namespace: str,
    name: str,
    settings: OperatorSettings,
    publisher: EventPublisher | None,
    now: datetime,
    emit: EmitEvent,
    experiments_created: Callable[[int], None] = lambda n: None,
    observed: tuple[Obj, list[Obj]] | None = None,
    seen: Callable[[Obj], None] = lambda obj: None,
) -> PassResult:
    """One pass. ``observed``: the task and its Experiments as the watch cache holds them, instead of
    reading them (a stale view only delays a step: phases only move forward, so it never shows more
    free slots than there are, and every write is guarded by the task's resourceVersion).
    ``seen`` is told each Experiment this pass reads from the API server, creates or cancels."""
    if observed is not None:
        task, listed = observed
    else:
        read = await kube.get(TASKS, namespace, name)
        if read is None:
            return PassResult(idle=True)
        task = read
        listed = await kube.list(EXPERIMENTS, namespace, labels={resources.LABEL_TASK: name})
        for experiment in listed:
            seen(experiment)
    if task["metadata"].get("deletionTimestamp"):
        return PassResult(idle=True)
    meta = task["metadata"]
    generation = meta.get("generation")
    status = AutotuneTaskStatus.model_validate(task.get("status") or {})
    new = status.model_copy(deep=True)
    ref = TaskRef(namespace=namespace, name=name)

    experiments = [
        e
        for e in listed
        if any(o.get("uid") == meta["uid"] for o in e["metadata"].get("ownerReferences") or [])
    ]
    experiments.sort(key=lambda e: int(e["spec"]["index"]))

    phase_message = ""
    failure: tuple[str, str] | None = None
    try:
        spec = AutotuneTaskSpec.model_validate(task["spec"])
    except ValidationError as error:
        spec = None
        failure = (cond.INVALID_SPEC, f"spec: {error.errors()[0].get('loc')}: {error.errors()[0].get('msg')}")

    phase = TaskPhase(status.phase) if status.phase else TaskPhase.PENDING
    revalidate = status.observedGeneration != generation or phase == TaskPhase.PENDING
    if spec is not None and phase not in TERMINAL_TASK and revalidate:
        node_gpus = await max_node_gpus(kube, spec.engine.resources.gpuResourceName)
        failure = validate(spec, node_gpus, settings)

    def count(*phases: str) -> int:
        return sum(1 for e in experiments if _phase(e) in phases)

    if phase in TERMINAL_TASK:
        # Final; only make sure nothing it started keeps running (e.g. cancelled before a crash).
        for i, experiment in enumerate(experiments):
            if _phase(experiment) not in TERMINAL_PHASES:
                experiments[i] = await _cancel(kube, experiment, f"the task {phase.lower()}", now)
                seen(experiments[i])
    elif failure is not None or spec is None:
        reason, message = failure or (cond.INVALID_SPEC, "invalid spec")
        phase, phase_message = TaskPhase.FAILED, message
        new.conditions = cond.set_condition(new.conditions, cond.READY, ConditionStatus.FALSE, reason, message,
                                            now=now, generation=generation)  # fmt: skip
        new.conditions = cond.set_condition(new.conditions, cond.FAILED, ConditionStatus.TRUE, reason, message,
                                            now=now, generation=generation)  # fmt: skip
        emit(task, "Warning", reason, message)
    else:
        phase, phase_message = await _advance(
            kube, task, spec, new, experiments, now, emit, experiments_created, seen
        )

    succeeded = count(ExperimentPhase.SUCCEEDED)
    failed = count(ExperimentPhase.FAILED)
    finished = succeeded + failed
    best = best_of(experiments)
    max_experiments = spec.budget.maxExperiments if spec is not None else 0
    new.phase = phase
    new.progress = f"{finished}/{max_experiments}"
    new.experiments = ExperimentCounts(
        total=len(experiments),
        pending=count(ExperimentPhase.PENDING),
        running=count(ExperimentPhase.DEPLOYING, ExperimentPhase.BENCHMARKING),
        succeeded=succeeded,
        failed=failed,
    )
    new.best = best
    new.bestObjective = format_objective(best.objective) if best else None
    new.observedGeneration = generation
    if phase in TERMINAL_TASK and new.completionTime is None:
        new.completionTime = now
    if phase == TaskPhase.RUNNING and new.startTime is None:
        new.startTime = now

    # Events for every transition not yet recorded, in this same status patch.
    recorded = new.recorded or RecordedTransitions()
    progress_data: dict[str, Scalar] = {"progress": new.progress, "succeeded": succeeded, "failed": failed}
    if best is not None:
        progress_data["best"] = best.experiment
        progress_data["bestObjective"] = format_objective(best.objective)
    transitions = outbox.derive(
        recorded, experiments, phase=phase, phase_message=phase_message or f"task {phase.lower()}",
        finished=finished, progress_data=progress_data, now=now,
    )  # fmt: skip
    new.recorded, new.outbox, seq = outbox.record(
        recorded, new.outbox, new.eventSeq or 0, transitions, settings.outbox_cap
    )
    new.eventSeq = seq or None

    written: Obj | None = None
    body = new.to_k8s()
    if body != (task.get("status") or {}):
        task = await kube.patch_merge(
            TASKS, namespace, name,
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": body},
            sub="status",
        )  # fmt: skip
        written = task
        if phase != status.phase and phase in TERMINAL_TASK | {TaskPhase.SUSPENDED}:
            emit(task, "Warning" if phase == TaskPhase.FAILED else "Normal", phase, phase_message)

    # Publish only what the API server has accepted, then trim it from the outbox.
    if publisher is not None and new.outbox:
        last = await outbox.publish(publisher, ref, new.outbox)
        if last is not None:
            remaining = [e.model_dump(mode="json", exclude_none=True) for e in new.outbox if e.seq > last]
            trimmed = await kube.patch_merge(TASKS, namespace, name,
                                             {"status": {"outbox": remaining, "publishedSeq": last}},
                                             sub="status")  # fmt: skip
            written = trimmed
            new.outbox = [e for e in new.outbox if e.seq > last]

    active = count(ExperimentPhase.PENDING, ExperimentPhase.DEPLOYING, ExperimentPhase.BENCHMARKING)
    all_recorded = seq - (status.eventSeq or 0) == len(transitions)
    settled = phase in TERMINAL_TASK or phase == TaskPhase.SUSPENDED
    return PassResult(idle=settled and active == 0 and not new.outbox and all_recorded, written=written)


async def _advance(
    kube: Kube,
    task: Obj,
    spec: AutotuneTaskSpec,
    new: AutotuneTaskStatus,
    experiments: list[Obj],
    now: datetime,
    emit: EmitEvent,
    experiments_created: Callable[[int], None],
    seen: Callable[[Obj], None],
) -> tuple[TaskPhase, str]:
    """Decide the phase of a valid, unfinished task; create Experiments to fill free slots."""
    generation = task["metadata"].get("generation")
    budget = spec.budget
    active = [e for e in experiments if _phase(e) not in TERMINAL_PHASES]
    failed = sum(1 for e in experiments if _phase(e) == ExperimentPhase.FAILED)
    new.conditions = cond.set_condition(new.conditions, cond.READY, ConditionStatus.TRUE, cond.VALID,
                                        "the spec is valid", now=now, generation=generation)  # fmt: skip

    def fail(reason: str, message: str) -> tuple[TaskPhase, str]:
        new.conditions = cond.set_condition(new.conditions, cond.FAILED, ConditionStatus.TRUE, reason, message,
                                            now=now, generation=generation)  # fmt: skip
        new.conditions = cond.set_condition(new.conditions, cond.COMPLETE, ConditionStatus.FALSE, reason,
                                            message, now=now, generation=generation)  # fmt: skip
        return TaskPhase.FAILED, message

    async def cancel_active(message: str) -> None:
        for i, experiment in enumerate(experiments):
            if _phase(experiment) not in TERMINAL_PHASES:
                experiments[i] = await _cancel(kube, experiment, message, now)
                seen(experiments[i])

    if failed > budget.maxFailedExperiments:
        message = f"{failed} experiments failed, more than maxFailedExperiments {budget.maxFailedExperiments}"
        await cancel_active(f"cancelled: the task failed ({message})")
        return fail(cond.TOO_MANY_FAILURES, message)
    deadline = parse_duration(budget.deadline).total_seconds() if budget.deadline else None
    if (
        deadline is not None
        and new.startTime is not None
        and (now - new.startTime).total_seconds() > deadline
    ):
        message = f"the task did not finish within its deadline {budget.deadline}"
        await cancel_active(f"cancelled: {message}")
        return fail(cond.DEADLINE_EXCEEDED, message)

    slots = (
        0 if spec.suspend else min(budget.parallelism - len(active), budget.maxExperiments - len(experiments))
    )
    exhausted = len(experiments) >= budget.maxExperiments
    if not exhausted and (slots > 0 or not active):
        searcher = Searcher.replay(spec.searchSpace, spec.strategy, history(experiments, spec.slo))
        created = 0
        for params in searcher.ask(max(0, slots)):
            index = len(experiments)
            body = new_experiment(task, spec, index, params)
            made = await kube.create(EXPERIMENTS, task["metadata"]["namespace"], body)
            if made is None:  # it exists (an earlier pass created it): use what is there
                made = await kube.get(EXPERIMENTS, task["metadata"]["namespace"], body["metadata"]["name"])
                if made is None:
                    break
            experiments.append(made)
            seen(made)
            created += 1
        if created:
            experiments_created(created)
        exhausted = searcher.exhausted
    active = [e for e in experiments if _phase(e) not in TERMINAL_PHASES]

    if exhausted and not active:
        best = best_of(experiments)
        why = (
            "maxExperiments reached"
            if len(experiments) >= budget.maxExperiments
            else "search space exhausted"
        )
        if best is None:
            return fail(cond.NO_FEASIBLE_EXPERIMENT, f"{why}: no experiment met every hard SLO with a result")
        message = (
            f"{why}: best {best.experiment} with {spec.objective.metric}={format_objective(best.objective)}"
        )
        new.conditions = cond.set_condition(new.conditions, cond.COMPLETE, ConditionStatus.TRUE,
                                            cond.BUDGET_REACHED if len(experiments) >= budget.maxExperiments
                                            else cond.SPACE_EXHAUSTED, message, now=now, generation=generation)  # fmt: skip
        return TaskPhase.SUCCEEDED, message
    if spec.suspend:
        new.conditions = cond.set_condition(new.conditions, cond.SUSPENDED, ConditionStatus.TRUE,
                                            cond.SUSPEND_REQUESTED,
                                            f"suspended; {len(active)} running experiment(s) finishing",
                                            now=now, generation=generation)  # fmt: skip
        if not active:
            return TaskPhase.SUSPENDED, "suspended: no new experiments until suspend is false"
        return TaskPhase(new.phase) if new.phase else TaskPhase.RUNNING, ""
    new.conditions = cond.set_condition(new.conditions, cond.SUSPENDED, ConditionStatus.FALSE,
                                        cond.NOT_SUSPENDED, "", now=now, generation=generation)  # fmt: skip
    return TaskPhase.RUNNING, f"running up to {budget.parallelism} experiment(s) at once"
