"""What the task writer tells the searcher about its finished Experiments."""

from __future__ import annotations

from typing import Any

import pytest
from autotuner.core.crd.task import SLO
from autotuner.operator.task import history


def _experiment(params: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    return {"spec": {"parameters": params}, "status": status}


def test_history_grades_a_near_miss_of_a_hard_slo_and_keeps_failures_and_running_apart() -> None:
    slos = [SLO(metric="tpot_mean", max=0.1, hard=True)]
    told = history(
        [
            _experiment({"tp-size": 1}, {"phase": "Succeeded", "score": 900.0, "feasible": True,
                                         "metrics": {"tpot_mean": 0.08}}),
            _experiment({"tp-size": 2}, {"phase": "Succeeded", "reason": "SLOViolated", "score": 1000.0,
                                         "feasible": False, "metrics": {"tpot_mean": 0.102}}),
            _experiment({"tp-size": 4}, {"phase": "Failed", "reason": "OutOfMemory"}),
            _experiment({"tp-size": 8}, {"phase": "Benchmarking"}),
        ],
        slos,
    )  # fmt: skip
    (_, ok), (_, near_miss), (_, oom), (_, running) = told
    assert ok is not None and ok.feasible and ok.excess is None
    assert near_miss is not None and not near_miss.feasible
    assert near_miss.excess == pytest.approx(0.02)
    assert oom is not None and not oom.feasible and oom.score is None
    assert running is None
