"""The standard metric names shared by the runner's result, Experiment status, objectives and SLOs.

Times are in seconds, throughputs in tokens/s (``*_throughput``) or requests/s (``request_throughput``,
``goodput``).
"""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    TTFT_MEAN = "ttft_mean"
    TTFT_P50 = "ttft_p50"
    TTFT_P90 = "ttft_p90"
    TTFT_P99 = "ttft_p99"
    TPOT_MEAN = "tpot_mean"
    TPOT_P90 = "tpot_p90"
    ITL_MEAN = "itl_mean"
    E2E_LATENCY_MEAN = "e2e_latency_mean"
    E2E_LATENCY_P50 = "e2e_latency_p50"
    E2E_LATENCY_P90 = "e2e_latency_p90"
    E2E_LATENCY_P99 = "e2e_latency_p99"
    OUTPUT_THROUGHPUT = "output_throughput"
    OUTPUT_THROUGHPUT_PER_GPU = "output_throughput_per_gpu"
    TOTAL_THROUGHPUT = "total_throughput"
    REQUEST_THROUGHPUT = "request_throughput"
    GOODPUT = "goodput"
    SUCCESS_RATE = "success_rate"
    ERROR_COUNT = "error_count"


METRIC_NAMES: tuple[str, ...] = tuple(m.value for m in Metric)

# Metrics where a larger value is better; every other metric is a cost (latency, errors).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        Metric.OUTPUT_THROUGHPUT,
        Metric.OUTPUT_THROUGHPUT_PER_GPU,
        Metric.TOTAL_THROUGHPUT,
        Metric.REQUEST_THROUGHPUT,
        Metric.GOODPUT,
        Metric.SUCCESS_RATE,
    }
)
