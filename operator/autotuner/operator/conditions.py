"""Condition types, reasons and the rule that keeps lastTransitionTime honest.

Experiment end reasons are :class:`autotuner.core.crd.experiment.ExperimentReason`; the task-level
reasons live here, as CamelCase constants (kubebuilder's ``conditions.go`` habit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from autotuner.core.crd.common import Condition, ConditionStatus

# Condition types.
READY: Final = "Ready"
"""Task: the spec is valid and it is being worked on. Experiment: the engine is ready."""
COMPLETE: Final = "Complete"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"

# Task reasons.
VALID: Final = "Valid"
RUNNING: Final = "Running"
INVALID_SPEC: Final = "InvalidSpec"
UNKNOWN_ENGINE_FLAG: Final = "UnknownEngineFlag"
UNSATISFIABLE: Final = "Unsatisfiable"
TOO_MANY_FAILURES: Final = "TooManyFailures"
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
NO_FEASIBLE_EXPERIMENT: Final = "NoFeasibleExperiment"
BUDGET_REACHED: Final = "BudgetReached"
SPACE_EXHAUSTED: Final = "SearchSpaceExhausted"
SUSPEND_REQUESTED: Final = "SuspendRequested"
IN_PROGRESS: Final = "InProgress"
NOT_SUSPENDED: Final = "NotSuspended"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set; lastTransitionTime moves only when the status flips."""
    result: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.type != type_:
            result.append(condition)
            continue
        found = True
        flipped = condition.status != status
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message[:4096],
                lastTransitionTime=now
                if flipped or condition.lastTransitionTime is None
                else condition.lastTransitionTime,
                observedGeneration=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message[:4096],
                lastTransitionTime=now,
                observedGeneration=generation,
            )
        )
    return result
