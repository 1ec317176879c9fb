"""What the searcher is told about a finished configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autotuner.core.crd.task import SLO
from autotuner.operator.scoring import Score


def hard_excess(metrics: Mapping[str, float], slos: Sequence[SLO]) -> float | None:
    """How far ``metrics`` are past their hard SLOs: the largest relative excess (rule 3 of
    :mod:`..scoring`: 0.02 is 2 % past the bound), 0.0 when every hard SLO holds, None when a hard
    SLO's metric is missing or its bound is 0 (no relative measure)."""
    largest = 0.0
    for slo in slos:
        if not slo.hard:
            continue
        value = metrics.get(slo.metric)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        for bound, over in ((slo.max, True), (slo.min, False)):
            if bound is None:
                continue
            gap = value - bound if over else bound - value
            if gap > 0:
                if bound == 0:
                    return None
                largest = max(largest, gap / abs(bound))
    return largest


@dataclass(frozen=True)
class Outcome:
    """The result of one configuration, as the sampler needs it.

    ``score`` is maximise-oriented and already carries the soft-SLO penalties (:func:`scoring.score`);
    None when the experiment failed (crash, OOM, timeout). ``feasible`` is False for a failure or a
    hard SLO violation: the Bayesian sampler then learns to avoid that region, except for near misses
    (see :mod:`.tpe`), which need ``excess``.
    """

    score: float | None
    feasible: bool
    excess: float | None = None
    """For a measured configuration past a hard SLO: :func:`hard_excess` of its metrics. None when
    unknown or not applicable; the sampler then treats the violation as far from the bound."""

    def __post_init__(self) -> None:
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"an outcome's score must be a finite number, not {self.score!r}")
        if self.feasible and self.score is None:
            raise ValueError("a feasible outcome needs a score")
        if self.excess is not None and not (math.isfinite(self.excess) and self.excess >= 0):
            raise ValueError(f"an outcome's excess must be a finite number >= 0, not {self.excess!r}")

    @classmethod
    def failed(cls) -> Outcome:
        """An experiment that gave no result (engine crash, OOM, deploy or benchmark timeout)."""
        return cls(score=None, feasible=False)

    @classmethod
    def of(
        cls, score: Score, metrics: Mapping[str, float] | None = None, slos: Sequence[SLO] = ()
    ) -> Outcome:
        """The outcome of a scored benchmark result; give the ``metrics`` and ``slos`` it was scored
        with so that a near miss of a hard SLO is graded (see :mod:`.tpe`)."""
        excess = None
        if not score.feasible and score.score is not None and metrics is not None:
            excess = hard_excess(metrics, slos)
        return cls(score=score.score, feasible=score.feasible, excess=excess)
