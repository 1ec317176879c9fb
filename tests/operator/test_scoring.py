"""The scoring rule: objective orientation, soft-SLO penalties, hard-SLO feasibility, missing metrics."""

from __future__ import annotations

import pytest
from autotuner.core.crd.task import SLO, Objective
from autotuner.operator.scoring import Score, better, score
from autotuner.operator.search import Outcome

THROUGHPUT = Objective(metric="output_throughput", direction="maximize")
TTFT = Objective(metric="ttft_p90", direction="minimize")
METRICS = {
    "output_throughput": 2000.0,
    "ttft_p90": 1.2,
    "tpot_mean": 0.04,
    "success_rate": 0.97,
    "error_count": 3.0,
}


@pytest.mark.parametrize(
    ("objective", "slos", "expected"),
    [
        pytest.param(THROUGHPUT, [], Score(2000.0, 2000.0, True, []), id="maximize-no-slo"),
        pytest.param(TTFT, [], Score(1.2, -1.2, True, []), id="minimize-is-negated"),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="ttft_p90", max=1.5, hard=True)],
            Score(2000.0, 2000.0, True, []),
            id="slo-met",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="ttft_p90", max=1.0)],
            # 20 % over max at weight 1 costs 20 % of the objective.
            Score(2000.0, 2000.0 - 0.2 * 2000.0, True, ["ttft_p90 1.2 > max 1 (soft)"]),
            id="soft-max-penalty",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="ttft_p90", max=1.0, weight=2.5)],
            Score(2000.0, 2000.0 - 2.5 * 0.2 * 2000.0, True, ["ttft_p90 1.2 > max 1 (soft)"]),
            id="soft-weight-scales-penalty",
        ),
        pytest.param(
            TTFT,
            [SLO(metric="success_rate", min=0.99)],
            Score(1.2, -1.2 - (0.02 / 0.99) * 1.2, True, ["success_rate 0.97 < min 0.99 (soft)"]),
            id="soft-min-penalty-on-minimized-objective",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="error_count", max=0.0)],
            Score(2000.0, 2000.0 - 3.0 * 2000.0, True, ["error_count 3 > max 0 (soft)"]),
            id="zero-bound-uses-absolute-excess",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="ttft_p90", max=1.0, hard=True)],
            Score(2000.0, 2000.0, False, ["ttft_p90 1.2 > max 1 (hard)"]),
            id="hard-violation-is-infeasible-without-penalty",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="ttft_p90", max=1.0, hard=True), SLO(metric="tpot_mean", max=0.03)],
            Score(
                2000.0,
                2000.0 - (0.01 / 0.03) * 2000.0,
                False,
                ["ttft_p90 1.2 > max 1 (hard)", "tpot_mean 0.04 > max 0.03 (soft)"],
            ),
            id="hard-and-soft-together",
        ),
        pytest.param(
            Objective(metric="goodput"),
            [SLO(metric="ttft_p90", max=1.0)],
            Score(None, None, False, ["objective goodput missing", "ttft_p90 1.2 > max 1 (soft)"]),
            id="missing-objective-is-infeasible",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="e2e_latency_p99", max=5.0, hard=True)],
            Score(2000.0, 2000.0, False, ["e2e_latency_p99 missing (hard)"]),
            id="missing-hard-slo-metric-is-infeasible",
        ),
        pytest.param(
            THROUGHPUT,
            [SLO(metric="e2e_latency_p99", max=5.0)],
            Score(2000.0, 2000.0, True, ["e2e_latency_p99 missing (soft, no penalty)"]),
            id="missing-soft-slo-metric-is-reported-without-penalty",
        ),
    ],
)
def test_score_follows_the_documented_rule(objective: Objective, slos: list[SLO], expected: Score) -> None:
    result = score(METRICS, objective, slos)
    assert result.objective == expected.objective
    assert result.feasible == expected.feasible
    assert result.violations == expected.violations
    assert result.score == pytest.approx(expected.score)


def test_a_non_finite_objective_counts_as_missing() -> None:
    result = score({"output_throughput": float("nan")}, THROUGHPUT, [])
    assert (result.objective, result.score, result.feasible) == (None, None, False)


def test_a_feasible_configuration_beats_an_infeasible_one_with_a_higher_score() -> None:
    feasible = Score(100.0, 100.0, True, [])
    infeasible = Score(900.0, 900.0, False, ["ttft_p90 2 > max 1 (hard)"])
    assert better(feasible, infeasible)
    assert not better(infeasible, feasible)


def test_among_equally_feasible_configurations_the_higher_score_wins_and_ties_do_not() -> None:
    low, high = Score(1.0, 1.0, True, []), Score(2.0, 2.0, True, [])
    assert better(high, low) and not better(low, high)
    assert not better(low, Score(1.0, 1.0, True, []))
    failed = Score(None, None, False, ["objective goodput missing"])
    infeasible = Score(5.0, 5.0, False, [])
    assert better(infeasible, failed) and not better(failed, infeasible)


def test_a_score_becomes_the_outcome_the_searcher_is_told() -> None:
    assert Outcome.of(score(METRICS, THROUGHPUT, [])) == Outcome(score=2000.0, feasible=True)
    assert Outcome.of(score({}, THROUGHPUT, [])) == Outcome.failed()
