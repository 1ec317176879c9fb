"""Exactly-once events: transitions are derived from state, numbered, and kept in the task's status
until the event bus has them.

The task's single writer (see :mod:`.task`) calls :func:`derive` on every pass. It compares what it
observes (the task's new phase, its finished count, each Experiment's phase) with
``status.recorded`` — the transitions that already have a ``seq`` — and returns the missing ones,
numbered ``status.eventSeq + 1, ...``. They are appended to ``status.outbox`` *in the same status
patch* that moves ``recorded`` and ``eventSeq`` forward, so a transition is either recorded with its
seq or not at all. After the patch is applied, :func:`publish` appends the outbox to the stream in
seq order with the idempotent publisher (a duplicate ``(task, seq)`` is dropped by Redis) and the
published entries are trimmed with a second patch. A kill between any two steps is repaired by the
next pass: unrecorded transitions are derived again, unpublished ones republished, published ones
deduplicated.

Skipped intermediate states (an Experiment seen as Pending and next as Succeeded) are synthesised from
the Experiment's timestamps, so a consumer always sees created → started → benchmark → completed.

While Redis is unreachable the outbox grows up to ``cap`` entries; beyond that, new transitions are
not recorded yet (``recorded`` does not move), and are derived — with their original timestamps — once
the outbox drains, so nothing is lost and the status stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autotuner.core.crd.common import Scalar
from autotuner.core.crd.experiment import ExperimentPhase
from autotuner.core.crd.task import OutboxEvent, RecordedTransitions, TaskPhase
from autotuner.core.events import Event, EventType, TaskRef
from autotuner.core.stream import EventPublisher, SequenceGap

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

_RANK: dict[str | None, int] = {
    None: -1,
    ExperimentPhase.PENDING: 0,
    ExperimentPhase.DEPLOYING: 1,
    ExperimentPhase.BENCHMARKING: 2,
    ExperimentPhase.SUCCEEDED: 3,
    ExperimentPhase.FAILED: 3,
}


def _time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return fallback


@dataclass(frozen=True)
class Transition:
    type: EventType
    timestamp: datetime
    message: str
    data: dict[str, Scalar]
    experiment: str | None = None
    record_phase: str | None = None
    """For an experiment transition: the phase it records."""
    task_phase: str | None = None
    finished: int | None = None


def experiment_transitions(experiment: Obj, recorded_phase: str | None, now: datetime) -> list[Transition]:
    """The transitions of one Experiment past ``recorded_phase``, intermediate ones included."""
    meta = experiment["metadata"]
    name: str = meta["name"]
    status = experiment.get("status") or {}
    phase = status.get("phase") or ExperimentPhase.PENDING
    done = _RANK.get(recorded_phase, -1)
    current = _RANK.get(phase, 0)
    spec = experiment.get("spec") or {}
    out: list[Transition] = []
    created = _time(meta.get("creationTimestamp"), now)
    if done < 0 <= current:
        out.append(Transition(EventType.EXPERIMENT_CREATED, created,
                              f"experiment {name} created: {spec.get('summary', '')}".strip(),
                              {"index": int(spec.get("index", 0)), "summary": str(spec.get("summary", ""))},
                              name, ExperimentPhase.PENDING))  # fmt: skip
    if done < 1 <= current and status.get("startTime"):
        data: dict[str, Scalar] = {"phase": ExperimentPhase.DEPLOYING}
        if status.get("gpus") is not None:
            data["gpus"] = int(status["gpus"])
        out.append(Transition(EventType.EXPERIMENT_STARTED, _time(status.get("startTime"), now),
                              f"deploying the engine of {name}", data, name, ExperimentPhase.DEPLOYING))  # fmt: skip
    if done < 2 <= current and status.get("benchmarkStartTime"):
        out.append(Transition(EventType.BENCHMARK_STARTED, _time(status.get("benchmarkStartTime"), now),
                              f"engine of {name} ready, benchmark started",
                              {"phase": ExperimentPhase.BENCHMARKING}, name, ExperimentPhase.BENCHMARKING))  # fmt: skip
    if done < 3 <= current:
        data = {"phase": str(phase), "reason": str(status.get("reason") or "")}
        for key in ("objective", "score"):
            if status.get(key) is not None:
                data[key] = float(status[key])
        if status.get("feasible") is not None:
            data["feasible"] = bool(status["feasible"])
        type_ = (
            EventType.EXPERIMENT_COMPLETED
            if phase == ExperimentPhase.SUCCEEDED
            else EventType.EXPERIMENT_FAILED
        )
        out.append(Transition(type_, _time(status.get("completionTime"), now),
                              str(status.get("message") or "")[:1024], data, name, str(phase)))  # fmt: skip
    return out


_TASK_EVENT = {
    TaskPhase.SUCCEEDED: EventType.TASK_COMPLETED,
    TaskPhase.FAILED: EventType.TASK_FAILED,
    TaskPhase.SUSPENDED: EventType.TASK_SUSPENDED,
}


def derive(
    recorded: RecordedTransitions,
    experiments: Sequence[Obj],
    *,
    phase: str,
    phase_message: str,
    finished: int,
    progress_data: dict[str, Scalar],
    now: datetime,
) -> list[Transition]:
    """Every transition not yet recorded, in the order a consumer should see them."""
    before: list[Transition] = []
    after: list[Transition] = []
    if phase != recorded.phase:
        if phase == TaskPhase.RUNNING:
            type_ = (
                EventType.TASK_RESUMED if recorded.phase == TaskPhase.SUSPENDED else EventType.TASK_STARTED
            )
            before.append(Transition(type_, now, phase_message, {"phase": phase}, task_phase=phase))
        elif phase in _TASK_EVENT:
            after.append(Transition(_TASK_EVENT[TaskPhase(phase)], now, phase_message, {"phase": phase},
                                    task_phase=phase))  # fmt: skip
    middle: list[Transition] = []
    for experiment in experiments:
        middle += experiment_transitions(
            experiment, recorded.experiments.get(experiment["metadata"]["name"]), now
        )
    if finished != recorded.finished:
        middle.append(Transition(EventType.TASK_PROGRESS, now, f"{progress_data.get('progress', '')} finished",
                                 progress_data, finished=finished))  # fmt: skip
    return before + middle + after


def record(
    recorded: RecordedTransitions,
    outbox: list[OutboxEvent],
    event_seq: int,
    transitions: Sequence[Transition],
    cap: int,
) -> tuple[RecordedTransitions, list[OutboxEvent], int]:
    """Number the transitions that fit under ``cap`` and mark them recorded."""
    new_recorded = recorded.model_copy(deep=True)
    new_outbox = list(outbox)
    seq = event_seq
    for transition in transitions:
        if len(new_outbox) >= cap:
            break
        seq += 1
        new_outbox.append(
            OutboxEvent(
                seq=seq,
                type=transition.type,
                experiment=transition.experiment,
                timestamp=transition.timestamp,
                message=transition.message[:1024],
                data=transition.data,
            )
        )
        if transition.experiment is not None and transition.record_phase is not None:
            new_recorded.experiments[transition.experiment] = transition.record_phase
        if transition.task_phase is not None:
            new_recorded.phase = transition.task_phase
        if transition.finished is not None:
            new_recorded.finished = transition.finished
    return new_recorded, new_outbox, seq


def to_event(task: TaskRef, entry: OutboxEvent) -> Event:
    return Event(
        type=EventType(entry.type),
        task=task,
        experiment=entry.experiment,
        seq=entry.seq,
        timestamp=entry.timestamp,
        message=entry.message,
        data=dict(entry.data),
    )


async def publish(publisher: EventPublisher, task: TaskRef, outbox: Sequence[OutboxEvent]) -> int | None:
    """Publish ``outbox`` in seq order; returns the last seq the stream is known to hold (None: none).

    Stops at the first failure (Redis down): the rest stays in the outbox for the next pass.
    """
    published: int | None = None
    for entry in sorted(outbox, key=lambda e: e.seq):
        try:
            await publisher.publish(to_event(task, entry))
        except SequenceGap as gap:
            if gap.last == 0 and await publisher.rebase(task, entry.seq - 1):
                # Redis lost its data (no persistence): earlier events are gone from the stream for
                # good; continue from here rather than block the task forever.
                logger.warning("event stream had no record of %s; continuing at seq %d", task.key, entry.seq)
                await publisher.publish(to_event(task, entry))
            else:
                logger.error("cannot publish %s seq %d: %s", task.key, entry.seq, gap)
                return published
        except Exception as error:  # Redis unreachable: keep the outbox, retry next pass
            logger.warning("event bus unavailable for %s (%s); %d event(s) kept in the outbox",
                           task.key, error, len(outbox))  # fmt: skip
            return published
        published = entry.seq
    return published
