"""Aggregation of request records into the standard metric names, per level and overall.

Per concurrency level (``duration`` = the level's wall time, first request sent to last one finished):

- latency means and percentiles (``ttft_*``, ``tpot_*``, ``itl_mean``, ``e2e_latency_*``) over the level's
  successful requests; percentiles interpolate linearly between order statistics (numpy's default);
  ``tpot`` is per request, ``(e2e - ttft) / (output_tokens - 1)``, for requests of at least 2 tokens;
  ``itl_mean`` is the mean of all inter-chunk gaps;
- ``output_throughput`` = output tokens of successful requests / duration; ``total_throughput`` adds
  their input tokens; ``request_throughput`` = successful requests / duration;
  ``output_throughput_per_gpu`` = ``output_throughput`` / GPUs;
- ``goodput`` = successful requests that met every given SLO / duration (without SLOs, equal to
  ``request_throughput``);
- ``success_rate`` = successful / all requests sent (requests cut off by the level's deadline count as
  timeouts), ``error_count`` = failed requests.

Overall (the result's top-level ``metrics``): latency means and percentiles pooled over all successful
requests of all levels; the throughputs (``output_throughput``, ``total_throughput``,
``request_throughput``, ``goodput``, ``output_throughput_per_gpu``) are the maximum over levels — the
peak sustained rate; ``success_rate`` over all requests of all levels; ``error_count`` summed.
A metric that cannot be computed (no successful request) is omitted, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from autotuner.core.metrics import Metric
from autotuner.runner.client import ErrorKind, RequestRecord

THROUGHPUT_METRICS: tuple[Metric, ...] = (
    Metric.OUTPUT_THROUGHPUT,
    Metric.OUTPUT_THROUGHPUT_PER_GPU,
    Metric.TOTAL_THROUGHPUT,
    Metric.REQUEST_THROUGHPUT,
    Metric.GOODPUT,
)

SLO_KEYS: tuple[str, ...] = ("ttft", "tpot", "e2e_latency")
"""Per-request SLO thresholds ``--slo`` accepts (seconds)."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of one per-request quantity."""

    count: int
    mean: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        data = sorted(values)
        if not data:
            return None
        return cls(
            count=len(data),
            mean=math.fsum(data) / len(data),
            min=data[0],
            p50=percentile(data, 50),
            p90=percentile(data, 90),
            p95=percentile(data, 95),
            p99=percentile(data, 99),
            max=data[-1],
        )

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def meets_slo(rec: RequestRecord, slo: dict[str, float]) -> bool:
    """Whether a successful request met every given threshold (a 1-token answer has no TPOT to miss)."""
    if not rec.ok:
        return False
    if "ttft" in slo and (rec.ttft is None or rec.ttft > slo["ttft"]):
        return False
    tpot = rec.tpot
    if "tpot" in slo and tpot is not None and tpot > slo["tpot"]:
        return False
    return not ("e2e_latency" in slo and rec.e2e > slo["e2e_latency"])


@dataclass
class LevelStats:
    """Everything measured at one concurrency level."""

    concurrency: int
    duration: float
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def ok(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]

    def error_counts(self) -> dict[str, int]:
        counts = {k.value: 0 for k in ErrorKind}
        for r in self.records:
            if r.error is not None:
                counts[r.error.value] += 1
        return counts

    def http_statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            if r.error is ErrorKind.HTTP and r.status is not None:
                out[str(r.status)] = out.get(str(r.status), 0) + 1
        return out

    def error_samples(self, limit: int = 5) -> list[str]:
        """The first message of each distinct error kind, then further ones, up to ``limit``."""
        seen: dict[str, str] = {}
        for r in self.records:
            if r.error is not None and r.error.value not in seen:
                seen[r.error.value] = f"{r.error.value}: {r.detail}"
        return list(seen.values())[:limit]

    def metrics(self, slo: dict[str, float], gpus: int) -> dict[str, float]:
        ok = self.ok
        out = latency_metrics(ok)
        total = len(self.records)
        if total:
            out[Metric.SUCCESS_RATE] = len(ok) / total
        out[Metric.ERROR_COUNT] = float(total - len(ok))
        if ok and self.duration > 0:
            out_tokens = sum(r.output_tokens for r in ok)
            in_tokens = sum(r.input_tokens for r in ok)
            out[Metric.OUTPUT_THROUGHPUT] = out_tokens / self.duration
            out[Metric.OUTPUT_THROUGHPUT_PER_GPU] = out_tokens / self.duration / gpus
            out[Metric.TOTAL_THROUGHPUT] = (out_tokens + in_tokens) / self.duration
            out[Metric.REQUEST_THROUGHPUT] = len(ok) / self.duration
            good = sum(1 for r in ok if meets_slo(r, slo)) if slo else len(ok)
            out[Metric.GOODPUT] = good / self.duration
        return _ordered(out)

    def distributions(self) -> dict[str, dict[str, float]]:
        ok = self.ok
        dists = {
            "ttft": Distribution.of(r.ttft for r in ok if r.ttft is not None),
            "tpot": Distribution.of(t for r in ok if (t := r.tpot) is not None),
            "itl": Distribution.of(x for r in ok for x in r.itls),
            "e2e_latency": Distribution.of(r.e2e for r in ok),
            "input_tokens": Distribution.of(float(r.input_tokens) for r in ok),
            "output_tokens": Distribution.of(float(r.output_tokens) for r in ok),
        }
        return {k: d.as_dict() for k, d in dists.items() if d is not None}


def latency_metrics(ok: Sequence[RequestRecord]) -> dict[str, float]:
    """Latency means and percentiles of successful requests, under the standard names."""
    out: dict[str, float] = {}
    if ttft := Distribution.of(r.ttft for r in ok if r.ttft is not None):
        out |= {
            Metric.TTFT_MEAN: ttft.mean,
            Metric.TTFT_P50: ttft.p50,
            Metric.TTFT_P90: ttft.p90,
            Metric.TTFT_P99: ttft.p99,
        }
    if tpot := Distribution.of(t for r in ok if (t := r.tpot) is not None):
        out |= {Metric.TPOT_MEAN: tpot.mean, Metric.TPOT_P90: tpot.p90}
    if itl := Distribution.of(x for r in ok for x in r.itls):
        out[Metric.ITL_MEAN] = itl.mean
    if e2e := Distribution.of(r.e2e for r in ok):
        out |= {
            Metric.E2E_LATENCY_MEAN: e2e.mean,
            Metric.E2E_LATENCY_P50: e2e.p50,
            Metric.E2E_LATENCY_P90: e2e.p90,
            Metric.E2E_LATENCY_P99: e2e.p99,
        }
    return out


def overall_metrics(levels: Sequence[LevelStats], slo: dict[str, float], gpus: int) -> dict[str, float]:
    """The run's headline metrics by the rule in the module docstring."""
    records = [r for lv in levels for r in lv.records]
    ok = [r for r in records if r.ok]
    out = latency_metrics(ok)
    if records:
        out[Metric.SUCCESS_RATE] = len(ok) / len(records)
    out[Metric.ERROR_COUNT] = float(len(records) - len(ok))
    per_level = [lv.metrics(slo, gpus) for lv in levels]
    for name in THROUGHPUT_METRICS:
        values = [m[name] for m in per_level if name in m]
        if values:
            out[name] = max(values)
    return _ordered(out)


def merge_level_metrics(per_level: Sequence[dict[str, float]], weights: Sequence[int]) -> dict[str, float]:
    """Overall metrics when only per-level summaries exist (external tools).

    Throughputs are the maximum over levels as for the built-in runner; latency figures, which cannot be
    pooled without the raw requests, are the request-weighted mean of the levels' values (exact for
    means, an approximation for percentiles); ``error_count`` is summed and ``success_rate`` recomputed.
    """
    out: dict[str, float] = {}
    for name in Metric:
        values = [(m[name], w) for m, w in zip(per_level, weights, strict=True) if name in m]
        if not values:
            continue
        if name in THROUGHPUT_METRICS:
            out[name] = max(v for v, _ in values)
        elif name is Metric.ERROR_COUNT:
            out[name] = math.fsum(v for v, _ in values)
        elif name is Metric.SUCCESS_RATE:
            errors = sum(m.get(Metric.ERROR_COUNT, 0.0) for m in per_level)
            total = sum(weights) + errors
            if total:
                out[name] = sum(weights) / total
        else:
            wsum = sum(w for _, w in values)
            out[name] = (
                math.fsum(v * w for v, w in values) / wsum
                if wsum
                else math.fsum(v for v, _ in values) / len(values)
            )
    return _ordered(out)


def _ordered(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics in the canonical order of :class:`Metric`, finite values only, as plain ``str`` keys."""
    return {str(m.value): float(metrics[m]) for m in Metric if m in metrics and math.isfinite(metrics[m])}
