"""The ask/tell searcher behind every AutotuneTask: grid, random or Bayesian (Optuna TPE).

Determinism: the k-th proposal (k = how many configurations were asked before it) depends only on
the strategy's seed, k, and the history — the configurations asked so far, in order, and the
outcomes told so far. No random state is carried from one proposal to the next, so a searcher rebuilt
with :meth:`Searcher.replay` from the recorded Experiments asks exactly what the uninterrupted one
would have, and the order in which results were told does not matter, only which ones were.

- grid: the first point in grid order (see :mod:`.space`) not asked yet;
- random: a uniform draw from a generator seeded with (seed, k), redrawn while it hits a configuration
  already asked; in a finite space, after :data:`RANDOM_ATTEMPTS` misses, the first unexplored point
  from a random grid position, so it never loops forever;
- bayesian: TPE (see :mod:`.tpe`) seeded with (seed, k); when its draws keep hitting configurations
  already asked, a random unexplored point as above.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from autotuner.core.crd.task import Algorithm, SearchParameter, Strategy
from autotuner.operator.search import tpe
from autotuner.operator.search.outcome import Outcome
from autotuner.operator.search.space import Key, Params, SearchSpaceError, Space

RANDOM_ATTEMPTS = 64
"""Draws a random proposal makes before falling back to scanning for an unexplored point."""
TPE_ATTEMPTS = 8
"""Draws a Bayesian proposal makes before falling back to a random unexplored point."""
CONTINUOUS_ATTEMPTS = 10_000
"""Draws before giving up in an infinite space (only reachable with a degenerate continuous range)."""


class SearchError(RuntimeError):
    """The searcher cannot go on (e.g. it was told about a configuration it never asked)."""


@dataclass
class _Entry:
    params: Params
    outcome: Outcome | None


def derive_seed(seed: int, k: int, purpose: str) -> int:
    """A 32-bit seed for proposal ``k``, stable across processes and Python versions."""
    digest = hashlib.sha256(f"{seed}/{k}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Searcher:
    """Proposes configurations of ``space`` with ``strategy`` and learns from what it is told."""

    def __init__(self, space: Sequence[SearchParameter], strategy: Strategy) -> None:
        self._space = Space(space)
        self._strategy = strategy
        self._algorithm = Algorithm(strategy.algorithm)
        if self._algorithm is Algorithm.GRID and self._space.size is None:
            continuous = [d.name for d in self._space.dimensions if d.size is None]
            raise SearchSpaceError(
                "grid search needs a finite space: give "
                + ", ".join(continuous)
                + " values, a step, or integer: true"
            )
        self._entries: list[_Entry] = []
        self._index: dict[Key, int] = {}
        self._grid_cursor = 0

    @property
    def space_size(self) -> int | None:
        """How many configurations the space holds; None when a parameter is a continuous range."""
        return self._space.size

    @property
    def exhausted(self) -> bool:
        """Every configuration of a finite space has been asked."""
        return self._space.size is not None and len(self._entries) >= self._space.size

    @property
    def history(self) -> list[tuple[Params, Outcome | None]]:
        """The configurations asked so far, in order, with their outcome (None while running)."""
        return [(dict(e.params), e.outcome) for e in self._entries]

    def ask(self, n: int) -> list[Params]:
        """Up to ``n`` configurations never asked before; fewer (or none) once a finite space runs out."""
        if n < 0:
            raise ValueError(f"ask needs n >= 0, not {n}")
        asked: list[Params] = []
        while len(asked) < n and not self.exhausted:
            params = self._propose(len(self._entries))
            self._record(params, None)
            asked.append(dict(params))
        return asked

    def tell(self, params: Params, outcome: Outcome) -> None:
        """Record the outcome of a configuration this searcher asked.

        Telling the same outcome again is a no-op (a reconciler may repeat itself); a different
        outcome for a configuration already told is a :class:`SearchError`.
        """
        canonical = self._space.canonical(params)
        index = self._index.get(self._space.key(canonical))
        if index is None:
            raise SearchError(f"configuration {params!r} was never asked")
        entry = self._entries[index]
        if entry.outcome is not None and entry.outcome != outcome:
            raise SearchError(f"configuration {params!r} was already told {entry.outcome}, now {outcome}")
        entry.outcome = outcome

    @classmethod
    def replay(
        cls,
        space: Sequence[SearchParameter],
        strategy: Strategy,
        history: Sequence[tuple[Params, Outcome | None]],
    ) -> Searcher:
        """A searcher in the state the history leads to: the configurations in the order they were asked
        (experiment index order), each with its outcome, or None while it is still running."""
        searcher = cls(space, strategy)
        for params, outcome in history:
            canonical = searcher._space.canonical(params)
            if searcher._space.key(canonical) in searcher._index:
                raise SearchError(f"the history holds configuration {params!r} twice")
            searcher._record(canonical, outcome)
        return searcher

    def _record(self, params: Params, outcome: Outcome | None) -> None:
        self._index[self._space.key(params)] = len(self._entries)
        self._entries.append(_Entry(params, outcome))

    def _taken(self, params: Params) -> bool:
        return self._space.key(params) in self._index

    def _propose(self, k: int) -> Params:
        if self._algorithm is Algorithm.GRID:
            return self._next_grid_point()
        if self._algorithm is Algorithm.BAYESIAN:
            proposal = tpe.propose(
                self._space,
                [(e.params, e.outcome) for e in self._entries],
                seed=derive_seed(self._strategy.seed, k, "tpe"),
                initial_random=self._strategy.initialRandom,
                attempts=TPE_ATTEMPTS,
                taken=self._taken,
            )
            if proposal is not None:
                return proposal
        return self._random_unexplored(random.Random(derive_seed(self._strategy.seed, k, "random")))

    def _next_grid_point(self) -> Params:
        # The asked set only grows, so points before the cursor stay taken.
        while self._taken(point := self._space.point_at(self._grid_cursor)):
            self._grid_cursor += 1
        return point

    def _random_unexplored(self, rng: random.Random) -> Params:
        size = self._space.size
        for _ in range(RANDOM_ATTEMPTS if size is not None else CONTINUOUS_ATTEMPTS):
            params = self._space.sample(rng)
            if not self._taken(params):
                return params
        if size is None:
            raise SearchError(f"no unexplored configuration found in {CONTINUOUS_ATTEMPTS} draws")
        # Mostly explored finite space: walk the grid from a random position to the next free point,
        # which exists because the space is not exhausted.
        start = rng.randrange(size)
        for offset in range(size):
            params = self._space.point_at((start + offset) % size)
            if not self._taken(params):
                return params
        raise SearchError("the search space is exhausted")
