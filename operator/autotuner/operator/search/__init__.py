"""Search strategies for the tuning loop: a pure ask/tell library, no Kubernetes in it.

    searcher = Searcher(spec.searchSpace, spec.strategy)        # or Searcher.replay(..., history)
    for params in searcher.ask(free_slots):                      # never a configuration asked before
        ...                                                      # run an Experiment with params
    searcher.tell(params, Outcome.of(scoring.score(metrics, spec.objective, spec.slo), metrics, spec.slo))
    searcher.tell(params, Outcome.failed())                      # crash, OOM, timeout

See :mod:`.searcher` for the determinism contract and :mod:`.space` for how parameters become values.
"""

from autotuner.operator.search.outcome import Outcome, hard_excess
from autotuner.operator.search.searcher import Searcher, SearchError, derive_seed
from autotuner.operator.search.space import Params, SearchSpaceError, Space, Value

__all__ = [
    "Outcome",
    "Params",
    "SearchError",
    "SearchSpaceError",
    "Searcher",
    "Space",
    "Value",
    "derive_seed",
    "hard_excess",
]
