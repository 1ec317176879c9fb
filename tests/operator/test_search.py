"""The search strategies behind the tuning loop: grid, random and Bayesian (Optuna TPE)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
from autotuner.core.crd.task import SLO, Objective, SearchParameter, Strategy
from autotuner.operator.scoring import score
from autotuner.operator.search import (
    Outcome,
    Params,
    Searcher,
    SearchError,
    SearchSpaceError,
    hard_excess,
    tpe,
)

SMALL_SPACE = [
    SearchParameter(name="tp-size", values=[1, 2]),
    SearchParameter(name="mem-fraction-static", min=0.80, max=0.90, step=0.05),
    SearchParameter(name="schedule-policy", values=["lpm", "fcfs"]),
]
"""12 configurations."""

MIXED_SPACE = [
    SearchParameter(name="tp-size", values=[1, 2, 4]),
    SearchParameter(name="mem-fraction-static", min=0.70, max=0.95, step=0.05),
    SearchParameter(name="max-running-requests", min=8, max=512, integer=True, log=True),
    SearchParameter(name="schedule-policy", values=["lpm", "fcfs"]),
    SearchParameter(name="enable-mixed-chunk", values=[True, False]),
]


def strategy(algorithm: str, seed: int = 7, initial_random: int = 5) -> Strategy:
    return Strategy(algorithm=algorithm, seed=seed, initialRandom=initial_random)


def synthetic(params: Params) -> Outcome:
    """Throughput-like landscape with an OOM region (tp 1 at a high memory fraction) and an SLO wall."""
    tp = int(params["tp-size"])
    mem = float(params["mem-fraction-static"])
    mrr = int(params["max-running-requests"])
    if tp == 1 and mem >= 0.9:
        return Outcome.failed()
    value = 1000 * tp**0.7 * mem - 40 * (math.log2(mrr) - 7) ** 2
    value += 30 if params["schedule-policy"] == "lpm" else 0
    return Outcome(score=value, feasible=mrr <= 128)


def run_sequential(
    searcher: Searcher, steps: int, objective: Callable[[Params], Outcome] = synthetic
) -> list[Params]:
    """ask(1), tell, ask(1), tell... as an operator at parallelism 1 does."""
    asked = []
    for _ in range(steps):
        (params,) = searcher.ask(1)
        asked.append(params)
        searcher.tell(params, objective(params))
    return asked


def test_grid_visits_every_point_exactly_once_in_product_order_last_parameter_fastest() -> None:
    searcher = Searcher(SMALL_SPACE, strategy("grid"))
    asked = searcher.ask(5) + searcher.ask(5) + searcher.ask(5)
    expected = [
        {"tp-size": tp, "mem-fraction-static": mem, "schedule-policy": policy}
        for tp, mem, policy in itertools.product([1, 2], [0.8, 0.85, 0.9], ["lpm", "fcfs"])
    ]
    assert asked == expected
    assert searcher.exhausted
    assert searcher.ask(3) == []


def test_grid_continues_after_replay_from_where_the_history_left_off() -> None:
    first = Searcher(SMALL_SPACE, strategy("grid"))
    done = first.ask(4)
    history = [(p, Outcome(score=1.0, feasible=True)) for p in done[:3]] + [(done[3], None)]
    rebuilt = Searcher.replay(SMALL_SPACE, strategy("grid"), history)
    assert rebuilt.ask(8) == first.ask(8)


@pytest.mark.parametrize(
    ("space", "size"),
    [
        (SMALL_SPACE, 12),
        (MIXED_SPACE, 3 * 6 * 505 * 2 * 2),
        ([SearchParameter(name="x", min=1, max=4, integer=True)], 4),
        ([SearchParameter(name="x", min=0.1, max=0.35, step=0.1)], 3),
        ([SearchParameter(name="x", values=["a"]), SearchParameter(name="y", min=0.5, max=2.0)], None),
    ],
)
def test_space_size_counts_every_configuration_and_is_none_for_a_continuous_range(
    space: list[SearchParameter], size: int | None
) -> None:
    searcher = Searcher(space, strategy("random"))
    assert searcher.space_size == size
    assert not searcher.exhausted


def test_a_continuous_space_is_never_exhausted() -> None:
    space = [SearchParameter(name="x", min=0.0, max=1.0), SearchParameter(name="p", values=["a", "b"])]
    searcher = Searcher(space, strategy("random"))
    asked = searcher.ask(50)
    assert len(asked) == 50
    assert len({(p["x"], p["p"]) for p in asked}) == 50
    assert not searcher.exhausted


def test_values_keep_their_types_and_stepped_floats_are_rounded_to_the_step() -> None:
    space = [
        SearchParameter(name="flag", values=[1, True, 2.5, "lpm", False]),
        SearchParameter(name="mem-fraction-static", min=0.80, max=0.95, step=0.05),
        SearchParameter(name="max-running-requests", min=64, max=256, step=64),
        SearchParameter(name="chunked-prefill-size", min=1024, max=1026, integer=True),
    ]
    asked = Searcher(space, strategy("grid")).ask(1000)
    flags = [p["flag"] for p in asked[:: 4 * 4 * 3]]
    assert [(type(v), v) for v in flags] == [
        (int, 1),
        (bool, True),
        (float, 2.5),
        (str, "lpm"),
        (bool, False),
    ]
    assert sorted({p["mem-fraction-static"] for p in asked}) == [0.8, 0.85, 0.9, 0.95]
    assert {repr(p["mem-fraction-static"]) for p in asked} == {"0.8", "0.85", "0.9", "0.95"}
    assert sorted({p["max-running-requests"] for p in asked}) == [64, 128, 192, 256]
    assert all(type(p["max-running-requests"]) is int for p in asked)
    assert all(type(p["chunked-prefill-size"]) is int for p in asked)


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_sampled_values_keep_their_types_and_stay_in_range(algorithm: str) -> None:
    space = [*MIXED_SPACE, SearchParameter(name="temperature", min=0.01, max=10.0, log=True)]
    searcher = Searcher(space, strategy(algorithm, initial_random=3))
    for _ in range(10):
        (params,) = searcher.ask(1)
        assert type(params["tp-size"]) is int
        assert type(params["enable-mixed-chunk"]) is bool
        assert type(params["max-running-requests"]) is int
        assert 8 <= int(params["max-running-requests"]) <= 512
        assert repr(params["mem-fraction-static"]) in {"0.7", "0.75", "0.8", "0.85", "0.9", "0.95"}
        temperature = params["temperature"]
        assert type(temperature) is float
        assert 0.01 <= temperature <= 10.0
        assert temperature == float(f"{temperature:.6g}")
        searcher.tell(params, Outcome(score=float(params["tp-size"]), feasible=True))


def test_random_search_honours_the_log_scale() -> None:
    space = [SearchParameter(name="x", min=1.0, max=10000.0, log=True)]
    values = [float(p["x"]) for p in Searcher(space, strategy("random")).ask(400)]
    below_100 = sum(v < 100 for v in values) / len(values)
    # Half of a log-uniform draw lies below the geometric middle (100); a uniform draw puts 1 % there.
    assert 0.4 < below_100 < 0.6


def test_random_search_honours_the_log_scale_of_an_integer_range() -> None:
    space = [SearchParameter(name="x", min=1000, max=1_024_000, integer=True, log=True)]
    values = [int(p["x"]) for p in Searcher(space, strategy("random")).ask(400)]
    assert 0.4 < sum(v < 32_000 for v in values) / len(values) < 0.6


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_search_is_deterministic_for_a_seed_and_differs_across_seeds(algorithm: str) -> None:
    runs = {seed: run_sequential(Searcher(MIXED_SPACE, strategy(algorithm, seed)), 10) for seed in (1, 2)}
    assert run_sequential(Searcher(MIXED_SPACE, strategy(algorithm, 1)), 10) == runs[1]
    assert runs[1] != runs[2]


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_a_finite_space_is_fully_explored_without_repeats_then_exhausted(algorithm: str) -> None:
    searcher = Searcher(SMALL_SPACE, strategy(algorithm, initial_random=2))
    asked: list[Params] = []
    while batch := searcher.ask(5):
        asked += batch
        for params in batch:
            searcher.tell(params, Outcome(score=float(params["tp-size"]), feasible=True))
    assert len(asked) == 12
    assert sorted(map(str, asked)) == sorted(map(str, Searcher(SMALL_SPACE, strategy("grid")).ask(12)))
    assert searcher.exhausted


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_parallel_asks_never_return_a_configuration_running_or_done(algorithm: str) -> None:
    space = [
        SearchParameter(name="a", values=[1, 2, 3]),
        SearchParameter(name="b", min=1, max=10, integer=True),
    ]
    searcher = Searcher(space, strategy(algorithm, initial_random=3))
    seen: set[tuple[object, ...]] = set()
    running: list[Params] = []
    while not searcher.exhausted:
        for params in searcher.ask(4 - len(running)):
            key = (params["a"], params["b"])
            assert key not in seen
            seen.add(key)
            running.append(params)
        # Finish the oldest two; the rest keep running across the next ask.
        for params in running[:2]:
            score = -abs(int(params["a"]) * int(params["b"]) - 12)
            searcher.tell(params, Outcome(score=float(score), feasible=True))
        running = running[2:]
    assert len(seen) == 30


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_replayed_searcher_asks_exactly_what_the_uninterrupted_one_asks(algorithm: str) -> None:
    uninterrupted = Searcher(MIXED_SPACE, strategy(algorithm, 11, initial_random=4))
    history: list[tuple[Params, Outcome | None]] = []
    outcomes = []
    for step in range(16):
        (params,) = uninterrupted.ask(1)
        if step % 3 == 0:
            # An operator restart at this point: rebuilt from what the Experiments recorded.
            restarted = Searcher.replay(MIXED_SPACE, strategy(algorithm, 11, initial_random=4), history)
            assert restarted.ask(1) == [params]
        outcome = synthetic(params)
        outcomes.append(outcome)
        uninterrupted.tell(params, outcome)
        history.append((params, outcome))
    assert any(not o.feasible and o.score is None for o in outcomes), "the run must include failures"
    assert any(not o.feasible and o.score is not None for o in outcomes), "and hard SLO violations"


def test_replay_with_configurations_still_running_continues_like_the_uninterrupted_searcher() -> None:
    uninterrupted = Searcher(MIXED_SPACE, strategy("bayesian", 3, initial_random=2))
    first = uninterrupted.ask(3)
    for params in first[:2]:
        uninterrupted.tell(params, synthetic(params))
    second = uninterrupted.ask(2)
    history = [(p, synthetic(p)) for p in first[:2]] + [(first[2], None)] + [(p, None) for p in second]
    restarted = Searcher.replay(MIXED_SPACE, strategy("bayesian", 3, initial_random=2), history)
    uninterrupted.tell(second[0], synthetic(second[0]))
    restarted.tell(second[0], synthetic(second[0]))
    assert restarted.ask(3) == uninterrupted.ask(3)


def test_the_order_results_are_told_in_does_not_change_the_next_proposal() -> None:
    a = Searcher(MIXED_SPACE, strategy("bayesian", 5, initial_random=2))
    b = Searcher(MIXED_SPACE, strategy("bayesian", 5, initial_random=2))
    batch = a.ask(4)
    assert b.ask(4) == batch
    for params in batch:
        a.tell(params, synthetic(params))
    for params in reversed(batch):
        b.tell(params, synthetic(params))
    assert a.ask(2) == b.ask(2)


def infeasible_half(params: Params) -> Outcome:
    """x >= 10 (half the space) runs out of memory; elsewhere the score depends on y alone.

    x carries no score information, so only what the sampler was told about failures can steer it
    away from x >= 10.
    """
    x, y = int(params["x"]), int(params["y"])
    if x >= 10:
        return Outcome.failed()
    return Outcome(score=float(y), feasible=True)


def infeasible_in_last_half(algorithm: str, seed: int, steps: int = 30) -> int:
    space = [
        SearchParameter(name="x", min=0, max=19, integer=True),
        SearchParameter(name="y", min=0, max=19, integer=True),
    ]
    searcher = Searcher(space, strategy(algorithm, seed, initial_random=6))
    outcomes = [infeasible_half(p) for p in run_sequential(searcher, steps, infeasible_half)]
    return sum(not o.feasible for o in outcomes[steps // 2 :])


def test_bayesian_search_learns_to_avoid_the_infeasible_region() -> None:
    seeds = range(4)
    bayesian = sum(infeasible_in_last_half("bayesian", s) for s in seeds)
    random_ = sum(infeasible_in_last_half("random", s) for s in seeds)
    # Random search hits the failing half about half the time; TPE, told of the failures, far less.
    assert random_ >= 20
    assert bayesian <= 0.6 * random_


def test_telling_a_configuration_that_was_never_asked_is_refused() -> None:
    searcher = Searcher(SMALL_SPACE, strategy("grid"))
    searcher.ask(1)
    with pytest.raises(SearchError, match="never asked"):
        searcher.tell({"tp-size": 2, "mem-fraction-static": 0.9, "schedule-policy": "fcfs"}, Outcome.failed())


def test_telling_the_same_outcome_twice_is_accepted_and_a_different_one_refused() -> None:
    searcher = Searcher(SMALL_SPACE, strategy("grid"))
    (params,) = searcher.ask(1)
    searcher.tell(params, Outcome(score=3.0, feasible=True))
    searcher.tell(dict(params), Outcome(score=3.0, feasible=True))
    with pytest.raises(SearchError, match="already told"):
        searcher.tell(params, Outcome.failed())


def test_configurations_read_back_from_json_are_recognised() -> None:
    space = [
        SearchParameter(name="ratio", values=[1.0, 2.0]),
        SearchParameter(name="mem", min=0.5, max=1.0, step=0.25),
    ]
    searcher = Searcher(space, strategy("grid"))
    assert searcher.ask(1) == [{"ratio": 1.0, "mem": 0.5}]
    # The API server writes the float 1.0 back as the integer 1.
    searcher.tell({"ratio": 1, "mem": 0.5}, Outcome(score=1.0, feasible=True))
    assert searcher.history == [({"ratio": 1.0, "mem": 0.5}, Outcome(score=1.0, feasible=True))]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tp-size": 1, "mem-fraction-static": 0.8}, "missing parameters schedule-policy"),
        (
            {"tp-size": 1, "mem-fraction-static": 0.8, "schedule-policy": "lpm", "dp": 2},
            "unknown parameters dp",
        ),
        ({"tp-size": 3, "mem-fraction-static": 0.8, "schedule-policy": "lpm"}, "tp-size: 3 is not"),
        ({"tp-size": True, "mem-fraction-static": 0.8, "schedule-policy": "lpm"}, "tp-size: True is not"),
        ({"tp-size": 1, "mem-fraction-static": 0.82, "schedule-policy": "lpm"}, "mem-fraction-static: 0.82"),
    ],
)
def test_a_configuration_outside_the_space_is_refused_with_the_reason(params: Params, message: str) -> None:
    searcher = Searcher(SMALL_SPACE, strategy("grid"))
    with pytest.raises(SearchSpaceError, match=message):
        Searcher.replay(SMALL_SPACE, strategy("grid"), [(params, None)])
    with pytest.raises(SearchSpaceError, match=message):
        searcher.tell(params, Outcome.failed())


def test_a_history_holding_a_configuration_twice_is_refused() -> None:
    params: Params = {"tp-size": 1, "mem-fraction-static": 0.8, "schedule-policy": "lpm"}
    with pytest.raises(SearchError, match="twice"):
        Searcher.replay(SMALL_SPACE, strategy("grid"), [(params, None), (dict(params), None)])


@pytest.mark.parametrize(
    ("space", "algorithm", "message"),
    [
        ([SearchParameter(name="x", min=0.0, max=1.0)], "grid", "grid search needs a finite space: give x"),
        ([SearchParameter(name="x", values=[1, 1.0])], "random", "listed twice"),
        ([SearchParameter(name="x", values=[1], min=0)], "random", "not both"),
        ([SearchParameter(name="x", min=1.0)], "random", "both min and max"),
        ([SearchParameter(name="x", min=2.0, max=1.0)], "random", "min .2. must be less than max"),
        ([SearchParameter(name="x", min=0.0, max=1.0, step=0.0)], "random", "step must be a positive"),
        ([SearchParameter(name="x", min=1.0, max=8.0, step=1.0, log=True)], "random", "takes no step"),
        ([SearchParameter(name="x", min=0.0, max=8.0, log=True)], "random", "needs min > 0"),
        ([SearchParameter(name="x", min=1, max=8, step=0.5, integer=True)], "random", "whole min, max"),
        ([SearchParameter(name="x", min=1.5, max=8, integer=True)], "random", "whole min and max"),
        (
            [SearchParameter(name="x", values=[1]), SearchParameter(name="x", values=[2])],
            "random",
            "more than once",
        ),
        ([], "random", "empty"),
    ],
)
def test_an_invalid_space_is_refused_with_the_reason(
    space: list[SearchParameter], algorithm: str, message: str
) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        Searcher(space, strategy(algorithm))


def test_ask_refuses_a_negative_count_and_returns_nothing_for_zero() -> None:
    searcher = Searcher(SMALL_SPACE, strategy("random"))
    assert searcher.ask(0) == []
    with pytest.raises(ValueError, match="n >= 0"):
        searcher.ask(-1)


@pytest.mark.parametrize(
    ("score", "feasible", "message"),
    [(None, True, "needs a score"), (math.inf, False, "finite"), (math.nan, True, "finite")],
)
def test_an_inconsistent_outcome_is_refused(score: float | None, feasible: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Outcome(score=score, feasible=feasible)


def test_hard_excess_is_the_largest_relative_overshoot_of_a_hard_slo() -> None:
    slos = [
        SLO(metric="tpot_mean", max=0.1, hard=True),
        SLO(metric="success_rate", min=0.99, hard=True),
        SLO(metric="ttft_mean", max=1.0, weight=1.0),
    ]
    assert hard_excess({"tpot_mean": 0.102, "success_rate": 1.0, "ttft_mean": 9.0}, slos) == pytest.approx(
        0.02
    )
    assert hard_excess({"tpot_mean": 0.05, "success_rate": 0.891, "ttft_mean": 0.5}, slos) == pytest.approx(
        0.1
    )
    assert hard_excess({"tpot_mean": 0.05, "success_rate": 1.0}, slos) == 0.0
    assert hard_excess({"success_rate": 1.0}, slos) is None
    assert hard_excess({"errors": 2.0}, [SLO(metric="errors", max=0, hard=True)]) is None


def test_a_near_miss_of_a_hard_slo_is_a_weaker_signal_for_the_sampler_but_never_feasible_for_the_user() -> (
    None
):
    objective = Objective(metric="throughput", direction="maximize")
    slos = [SLO(metric="tpot_mean", max=0.1, hard=True)]
    near = {"throughput": 160.0, "tpot_mean": 0.102}
    far = {"throughput": 200.0, "tpot_mean": 0.15}
    near_outcome = Outcome.of(score(near, objective, slos), near, slos)
    far_outcome = Outcome.of(score(far, objective, slos), far, slos)
    assert not near_outcome.feasible and not far_outcome.feasible
    # 2 % past the bound: told to TPE as feasible, 2 * 2 % = 4 % below what it measured.
    value, feasible = tpe.signal(near_outcome, worst=0.0)
    assert feasible and value == pytest.approx(160.0 * (1 - tpe.HARD_SLO_PENALTY * 0.02))
    # 50 % past it: infeasible to TPE too; so is a violation told without its excess.
    assert tpe.signal(far_outcome, worst=0.0) == (200.0, False)
    assert tpe.signal(Outcome(score=160.0, feasible=False), worst=0.0) == (160.0, False)
    assert tpe.signal(Outcome.failed(), worst=-3.0) == (-3.0, False)


def test_bayesian_search_finds_an_optimum_hidden_behind_a_hard_slo_edge_sooner_with_near_misses_graded() -> (
    None
):
    """The best configuration sits at the SLO bound; its neighbours miss it by a few percent. Told
    how far they missed, TPE keeps searching next to them instead of fleeing the region."""
    space = [
        SearchParameter(name="batch", values=[8, 16, 32, 64, 128, 256]),
        SearchParameter(name="chunk", values=[512, 1024, 2048, 4096, 8192]),
        SearchParameter(name="mem", min=0.5, max=0.95, step=0.05),
    ]
    objective = Objective(metric="throughput", direction="maximize")
    slos = [SLO(metric="tpot", max=0.1, hard=True)]

    def measure(params: Params, graded: bool) -> Outcome:
        b, c = space[0].values.index(params["batch"]), space[1].values.index(params["chunk"])  # type: ignore[union-attr]
        # Only batch 256 with chunk 8192 reaches 200 within the SLO; chunk 4096 misses it by 2.5 %.
        metrics = {"throughput": 100.0 + 20 * b, "tpot": round(0.06 + 0.01 * b - 0.0025 * c, 6)}
        scored = score(metrics, objective, slos)
        return Outcome.of(scored, metrics if graded else None, slos)

    def steps_to_optimum(seed: int, graded: bool) -> int:
        searcher = Searcher(space, strategy("bayesian", seed))
        for step in range(1, 61):
            (params,) = searcher.ask(1)
            outcome = measure(params, graded)
            searcher.tell(params, outcome)
            if outcome.feasible and outcome.score == 200.0:
                return step
        return 61

    seeds = range(6)
    graded = sum(steps_to_optimum(s, True) for s in seeds)
    ungraded = sum(steps_to_optimum(s, False) for s in seeds)
    assert graded < ungraded
