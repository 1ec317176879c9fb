"""Bayesian proposals with Optuna's TPE, rebuilt from the history for every proposal.

No sampler state survives between proposals: each one builds an in-memory study from the history
(in the order the configurations were asked) and asks a fresh ``TPESampler`` seeded for that
proposal. The proposal is therefore a pure function of (seed, proposal index, history), which is what
lets an operator restarted from its Experiments suggest exactly what it would have suggested.

How results reach TPE (the sampler's signal; the user-facing rule of :mod:`..scoring` is unchanged):

- a feasible result is a COMPLETE trial with its score (the study maximises);
- a near miss — measured, but past a hard SLO by a relative ``excess`` of at most
  :data:`NEAR_MISS` — is a feasible trial worth ``score - HARD_SLO_PENALTY * excess * |score|``
  (the soft-SLO formula with a steeper weight). The best configurations usually sit right at an SLO
  bound, so a configuration 2 % past it marks the region to search next rather than one to avoid.
  It can still never be the task's best: the operator ranks with :func:`scoring.better`.
- any other infeasible result (a hard SLO violated by more, or by an unknown amount) and a failed one
  (crash, OOM, timeout) is a COMPLETE trial with a violated constraint
  (``FrozenTrial.set_constraint``, value 1; Optuna's convention: > 0 is violated) and its score, or
  the worst score seen when it has none (TPE needs a finite value). TPE ranks infeasible trials after
  all feasible ones when it splits them into its "good" and "bad" densities, so the sampler learns
  to avoid the region. (Optuna 5 deprecated ``TPESampler(constraints_func=...)``, which only
  computes this value when a trial finishes; the trials here are added finished, with the
  constraint already set.)
- a configuration still running is a RUNNING trial; with ``constant_liar`` TPE counts it as bad, so
  parallel asks spread out instead of piling onto the current optimum.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import optuna
from autotuner.operator.search.outcome import Outcome
from autotuner.operator.search.space import Params, Space
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial, TrialState, create_trial

MULTIVARIATE = True
"""Model the parameters jointly (tp-size and memory fraction decide OOM together)."""
N_EI_CANDIDATES = 24
"""Candidates TPE draws from its "good" density per proposal, keeping the best by expected improvement."""
HARD_SLO_PENALTY = 2.0
"""Score the sampler loses per unit of relative hard-SLO excess for a near miss (see the module
docstring): at 2.0 a configuration 2 % past its bound is told as 4 % worse than it measured."""
NEAR_MISS = 0.1
"""Largest relative hard-SLO excess told as a near miss; farther violations are infeasible to TPE."""
CONSTRAINT = "feasibility"
"""Name of the constraint every told trial carries (Optuna: > 0 is violated)."""
VIOLATED = 1.0
"""Constraint value of an infeasible or failed configuration."""

# Optuna announces every in-memory study at INFO; one study per proposal would flood the log.
logging.getLogger("optuna").setLevel(logging.WARNING)


def signal(outcome: Outcome, worst: float) -> tuple[float, bool]:
    """What TPE is told for ``outcome``: (value, feasible); ``worst`` stands in for a missing score."""
    if outcome.feasible:
        assert outcome.score is not None
        return outcome.score, True
    if outcome.score is not None and outcome.excess is not None and outcome.excess <= NEAR_MISS:
        return outcome.score - HARD_SLO_PENALTY * outcome.excess * abs(outcome.score), True
    return (outcome.score if outcome.score is not None else worst), False


def _trial(space: Space, params: Params, outcome: Outcome | None, worst: float) -> FrozenTrial:
    distributions = space.distributions()
    if outcome is None:
        return create_trial(
            state=TrialState.RUNNING, params=space.to_optuna(params), distributions=distributions
        )
    value, feasible = signal(outcome, worst)
    trial = create_trial(
        state=TrialState.COMPLETE,
        value=value,
        params=space.to_optuna(params),
        distributions=distributions,
    )
    trial.set_constraint(CONSTRAINT, 0.0 if feasible else VIOLATED)
    return trial


def propose(
    space: Space,
    history: Sequence[tuple[Params, Outcome | None]],
    *,
    seed: int,
    initial_random: int,
    attempts: int,
    taken: Callable[[Params], bool],
) -> Params | None:
    """A configuration that is not ``taken``, or None after ``attempts`` draws that all were.

    ``seed`` must already be specific to this proposal (see the module docstring). A rejected draw
    stays in the study as a running trial, which steers the next draw away from it.
    """
    scores = [o.score for _, o in history if o is not None and o.score is not None]
    worst = min(scores, default=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        sampler = TPESampler(
            seed=seed,
            n_startup_trials=initial_random,
            n_ei_candidates=N_EI_CANDIDATES,
            multivariate=MULTIVARIATE,
            constant_liar=True,
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.add_trials([_trial(space, p, o, worst) for p, o in history])
        distributions = space.distributions()
        for _ in range(attempts):
            trial = study.ask(distributions)
            params = space.from_optuna(trial.params)
            if not taken(params):
                return params
    return None
