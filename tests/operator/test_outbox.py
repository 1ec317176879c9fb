"""Deriving, numbering and bounding the event outbox (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from autotuner.core.crd.task import RecordedTransitions
from autotuner.core.events import EventType
from autotuner.operator import outbox

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def experiment(name: str, phase: str | None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"index": 0, "summary": "tp-size=1"},
        "status": {"phase": phase, **status} if phase else {},
    }


def derive(recorded: RecordedTransitions, experiments: list[dict[str, Any]], phase: str = "Running",
           finished: int = 0) -> list[outbox.Transition]:  # fmt: skip
    return outbox.derive(recorded, experiments, phase=phase, phase_message="", finished=finished,
                         progress_data={"progress": f"{finished}/4"}, now=NOW)  # fmt: skip


def test_skipped_intermediate_transitions_are_synthesised_from_timestamps() -> None:
    done = experiment("t-0000", "Succeeded", startTime="2025-01-01T00:00:01Z",
                      benchmarkStartTime="2025-01-01T00:00:05Z", completionTime="2025-01-01T00:00:09Z",
                      reason="Completed", objective=1.0, score=1.0, feasible=True)  # fmt: skip
    transitions = derive(RecordedTransitions(phase="Running"), [done], finished=1)
    assert [t.type for t in transitions] == [
        EventType.EXPERIMENT_CREATED, EventType.EXPERIMENT_STARTED, EventType.BENCHMARK_STARTED,
        EventType.EXPERIMENT_COMPLETED, EventType.TASK_PROGRESS,
    ]  # fmt: skip
    assert [t.timestamp.second for t in transitions[:4]] == [0, 1, 5, 9]


def test_a_deploy_failure_has_no_benchmark_started() -> None:
    failed = experiment("t-0000", "Failed", startTime="2025-01-01T00:00:01Z", reason="OutOfMemory")
    types = [t.type for t in derive(RecordedTransitions(phase="Running"), [failed])]
    assert types == [EventType.EXPERIMENT_CREATED, EventType.EXPERIMENT_STARTED, EventType.EXPERIMENT_FAILED]


def test_recorded_transitions_are_not_derived_again() -> None:
    running = experiment("t-0000", "Deploying", startTime="2025-01-01T00:00:01Z")
    first = derive(RecordedTransitions(), [running])
    recorded, box, seq = outbox.record(RecordedTransitions(), [], 0, first, cap=100)
    assert [e.seq for e in box] == [1, 2, 3] and seq == 3
    assert first[0].type == EventType.TASK_STARTED
    assert derive(recorded, [running]) == []


def test_a_full_outbox_defers_transitions_without_losing_them() -> None:
    running = experiment("t-0000", "Deploying", startTime="2025-01-01T00:00:01Z")
    transitions = derive(RecordedTransitions(phase="Running"), [running])
    recorded, box, seq = outbox.record(RecordedTransitions(phase="Running"), [], 0, transitions, cap=1)
    assert [e.type for e in box] == [EventType.EXPERIMENT_CREATED] and seq == 1
    # Once the outbox drained, the deferred transition is derived again with its own timestamp.
    [later] = derive(recorded, [running])
    assert later.type == EventType.EXPERIMENT_STARTED and later.timestamp.second == 1


def test_task_phase_changes_become_task_events_in_order() -> None:
    assert [t.type for t in derive(RecordedTransitions(phase="Running"), [], phase="Suspended")] == [
        EventType.TASK_SUSPENDED
    ]
    assert [t.type for t in derive(RecordedTransitions(phase="Suspended"), [], phase="Running")] == [
        EventType.TASK_RESUMED
    ]
    types = [t.type for t in derive(RecordedTransitions(phase="Running", finished=0), [], phase="Succeeded",
                                     finished=1)]  # fmt: skip
    assert types == [EventType.TASK_PROGRESS, EventType.TASK_COMPLETED]
