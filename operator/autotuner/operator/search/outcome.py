"""What the searcher is told about a finished configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autotuner.operator.scoring import Score


@dataclass(frozen=True)
class Outcome:
    """The result of one configuration, as the sampler needs it.

    ``score`` is maximise-oriented and already carries the soft-SLO penalties (:func:`scoring.score`);
    None when the experiment failed (crash, OOM, timeout). ``feasible`` is False for a failure or a
    hard SLO violation: the Bayesian sampler then learns to avoid that region.
    """

    score: float | None
    feasible: bool

    def __post_init__(self) -> None:
        if self.score is not None and not math.isfinite(self.score):
            raise ValueError(f"an outcome's score must be a finite number, not {self.score!r}")
        if self.feasible and self.score is None:
            raise ValueError("a feasible outcome needs a score")

    @classmethod
    def failed(cls) -> Outcome:
        """An experiment that gave no result (engine crash, OOM, deploy or benchmark timeout)."""
        return cls(score=None, feasible=False)

    @classmethod
    def of(cls, score: Score) -> Outcome:
        """The outcome of a scored benchmark result."""
        return cls(score=score.score, feasible=score.feasible)
