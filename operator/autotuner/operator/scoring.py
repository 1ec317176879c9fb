"""The scoring rule: one benchmark result (metrics) → a maximise-oriented score and feasibility.

1. The objective is the raw value of ``objective.metric``. If it is missing or not a finite number
   the configuration is infeasible and has no score.
2. Orientation: ``base = objective`` for ``maximize``, ``base = -objective`` for ``minimize``, so a
   higher score is always better.
3. Each SLO bounds one metric (``max`` and/or ``min``). A violated bound has a *relative excess*:
   ``(value - max) / |max|`` or ``(min - value) / |min|``; when the bound is 0 (``error_count`` max 0)
   the excess is absolute (``value - max``), as no relative measure exists.
4. A violated **hard** SLO makes the configuration infeasible (the score is still computed, for the
   record, but :func:`better` ranks any feasible configuration above it).
5. A violated **soft** SLO costs ``penalty = weight * relative excess * |objective|``, in the
   objective's own units: a 10 % excess at weight 1 costs 10 % of the objective, whatever its scale.
   ``score = base - sum(penalties)``. A SLO bounding both max and min can only violate one of them.
6. An SLO whose metric is missing (or not finite) cannot be checked: a hard one makes the
   configuration infeasible; a soft one is listed among the violations without a penalty.

``violations`` lists every violated or uncheckable SLO in a human-readable form, e.g.
``"ttft_p90 1.32 > max 1 (hard)"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autotuner.core.crd.task import SLO, Direction, Objective


@dataclass(frozen=True)
class Score:
    objective: float | None
    """The objective metric's raw value; None when the metric is missing."""
    score: float | None
    """Maximise-oriented: objective (maximize) or -objective (minimize), minus soft-SLO penalties."""
    feasible: bool
    """False when a hard SLO is violated or the objective metric is missing."""
    violations: list[str] = field(default_factory=list)
    """Human-readable, e.g. ``ttft_p90 1.32 > max 1 (hard)``."""


def _finite(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _excess(value: float, bound: float, over: bool) -> float:
    """How far ``value`` is past ``bound`` (relative to it, absolute for a bound of 0); <= 0: within."""
    gap = value - bound if over else bound - value
    return gap / abs(bound) if bound != 0 else gap


def score(metrics: Mapping[str, float], objective: Objective, slos: Sequence[SLO]) -> Score:
    """Score one benchmark result (the rule is in the module docstring)."""
    value = _finite(metrics, objective.metric)
    feasible = value is not None
    violations: list[str] = []
    if value is None:
        violations.append(f"objective {objective.metric} missing")
    penalty = 0.0
    for slo in slos:
        kind = "hard" if slo.hard else "soft"
        measured = _finite(metrics, slo.metric)
        if measured is None:
            violations.append(f"{slo.metric} missing ({kind}{'' if slo.hard else ', no penalty'})")
            feasible = feasible and not slo.hard
            continue
        for bound, over, sign, label in ((slo.max, True, ">", "max"), (slo.min, False, "<", "min")):
            if bound is None:
                continue
            excess = _excess(measured, bound, over)
            if excess <= 0:
                continue
            violations.append(f"{slo.metric} {measured:.4g} {sign} {label} {bound:g} ({kind})")
            if slo.hard:
                feasible = False
            elif value is not None:
                penalty += slo.weight * excess * abs(value)
    if value is None:
        return Score(objective=None, score=None, feasible=False, violations=violations)
    base = value if objective.direction == Direction.MAXIMIZE else -value
    return Score(objective=value, score=base - penalty, feasible=feasible, violations=violations)


def better(a: Score, b: Score) -> bool:
    """Whether ``a`` beats ``b``: feasible beats infeasible, then the higher score (a missing score loses)."""
    if a.feasible != b.feasible:
        return a.feasible
    if a.score is None or b.score is None:
        return a.score is not None and b.score is None
    return a.score > b.score
