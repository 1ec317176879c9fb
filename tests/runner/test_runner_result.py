"""The compact result contract: standard names only, finite values, never over 4 KiB."""

from __future__ import annotations

import pytest
from autotuner.core.metrics import METRIC_NAMES
from autotuner.runner.result import LEVEL_KEEP, MAX_COMPACT_BYTES, LevelResult, RunnerResult
from pydantic import ValidationError

FULL = {name: 123456.789012345 for name in METRIC_NAMES}


@pytest.mark.parametrize("levels", [0, 1, 3, 10, 200])
def test_compact_json_never_exceeds_4_kib_and_keeps_the_overall_metrics(levels: int) -> None:
    result = RunnerResult(
        tool="builtin",
        scenario="N(480,240)/(300,150)",
        metrics=FULL,
        levels=[LevelResult(concurrency=c + 1, metrics=FULL) for c in range(levels)],
        requests=1000,
        duration=12.5,
    )
    text = result.to_compact_json()
    assert len(text.encode()) <= MAX_COMPACT_BYTES
    parsed = RunnerResult.model_validate_json(text)
    assert set(parsed.metrics) == set(METRIC_NAMES)
    assert parsed.truncated == (len(result.model_dump_json()) > MAX_COMPACT_BYTES)
    if parsed.truncated:
        assert all(set(lv.metrics) == set(LEVEL_KEEP) for lv in parsed.levels)
        assert [lv.concurrency for lv in parsed.levels] == list(range(1, len(parsed.levels) + 1))


def test_an_error_result_stays_under_the_limit_even_with_a_huge_message() -> None:
    result = RunnerResult(
        tool="guidellm", scenario="D(1,1)", metrics={}, requests=0, duration=0, error="x" * 10_000
    )
    assert len(result.to_compact_json().encode()) <= MAX_COMPACT_BYTES


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"throughput": 1.0}, "unknown metric names"),
        ({"ttft_p90": float("nan")}, "not finite"),
        ({"goodput": float("inf")}, "not finite"),
    ],
)
def test_results_with_unknown_or_non_finite_metrics_are_rejected(
    metrics: dict[str, float], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        RunnerResult(tool="builtin", scenario="D(1,1)", metrics=metrics, requests=1, duration=1)


def test_an_external_tools_result_against_a_time_scaled_simulator_is_converted_to_real_time() -> None:
    from autotuner.runner.cli import in_real_time
    from autotuner.runner.result import FullResult, LevelReport

    wall = {"ttft_p90": 0.01, "tpot_mean": 0.0002, "output_throughput": 50_000.0, "success_rate": 1.0}
    summary = RunnerResult(
        tool="genai-bench", scenario="D(128,32)", metrics=wall,
        levels=[LevelResult(concurrency=4, metrics=wall)], requests=10, duration=2.0,
    )  # fmt: skip
    level = LevelReport(concurrency=4, requests=10, succeeded=10, duration=2.0, metrics=wall)
    real = in_real_time(FullResult(summary=summary, parameters={}, levels=[level]), 0.05)
    assert real.summary.time_scale == 0.05
    for metrics in (real.summary.metrics, real.summary.levels[0].metrics, real.levels[0].metrics):
        assert metrics == pytest.approx(
            {"ttft_p90": 0.2, "tpot_mean": 0.004, "output_throughput": 2_500.0, "success_rate": 1.0}
        )
    assert real.summary.duration == 2.0
