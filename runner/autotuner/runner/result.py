"""The runner's result: the compact JSON contract the operator parses, and the full per-level report.

Compact result (termination message and stdout's last line, at most :data:`MAX_COMPACT_BYTES`)::

    {"version": 1, "tool": "builtin", "scenario": "D(256,64)",
     "metrics": {"ttft_p90": 0.12, "output_throughput": 812.4, ...},
     "levels": [{"concurrency": 1, "metrics": {...}}, ...],
     "errors": {"http": 0, "timeout": 0, "connection": 0, "stream": 0, "other": 0},
     "requests": 200, "duration": 41.3}

``metrics`` keys are the standard names of :mod:`autotuner.core.metrics` (see
:mod:`autotuner.runner.stats` for how the overall values are derived); a metric that could not be
computed is absent. ``requests`` counts measured requests (warm-up excluded) over all levels and
``duration`` is the run's wall time in seconds. ``error`` is set when the run could not measure at all
(e.g. an external tool is not installed). When the full result would exceed the size limit, per-level
metrics are reduced to :data:`LEVEL_KEEP` and then levels dropped, and ``truncated`` is true.

Parse it with ``RunnerResult.model_validate_json(line)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import orjson
from autotuner.core.metrics import METRIC_NAMES, Metric
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_COMPACT_BYTES = 4096
"""Kubernetes keeps at most 4096 bytes of a container's termination message."""

LEVEL_KEEP: tuple[str, ...] = (
    Metric.OUTPUT_THROUGHPUT,
    Metric.REQUEST_THROUGHPUT,
    Metric.TTFT_P90,
    Metric.TPOT_MEAN,
    Metric.E2E_LATENCY_P90,
    Metric.SUCCESS_RATE,
)
"""Per-level metrics kept when the compact result must be trimmed."""

Tool = Literal["builtin", "genai-bench", "guidellm"]


def _check_metrics(value: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(value) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"unknown metric names {unknown}; expected names from autotuner.core.metrics")
    bad = sorted(k for k, v in value.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"metrics {bad} are not finite numbers")
    return value


class ErrorCounts(BaseModel):
    """Failed requests by kind (see :mod:`autotuner.runner.client`)."""

    model_config = ConfigDict(extra="forbid")

    http: int = 0
    timeout: int = 0
    connection: int = 0
    stream: int = 0
    other: int = 0
    """Errors an external tool reported without a kind."""

    @property
    def total(self) -> int:
        return self.http + self.timeout + self.connection + self.stream + self.other


class LevelResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(ge=1)
    metrics: dict[str, float]

    @field_validator("metrics")
    @classmethod
    def _metrics_are_standard(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_metrics(value)


class RunnerResult(BaseModel):
    """The compact result; the operator's contract with the runner."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tool: Tool
    scenario: str
    metrics: dict[str, float]
    levels: list[LevelResult] = Field(default_factory=list)
    errors: ErrorCounts = Field(default_factory=ErrorCounts)
    requests: int = Field(ge=0)
    duration: float = Field(ge=0)
    error: str | None = None
    """Why the run measured nothing, when it could not run at all."""
    truncated: bool = False
    """Whether per-level detail was trimmed to fit :data:`MAX_COMPACT_BYTES`."""
    time_scale: float = Field(default=1.0, gt=0)
    """Wall seconds per real second of the server (a time-scaled simulator); metrics are in real time."""

    @field_validator("metrics")
    @classmethod
    def _metrics_are_standard(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_metrics(value)

    @property
    def succeeded(self) -> int:
        return max(0, self.requests - self.errors.total)

    def to_compact_json(self) -> str:
        """One line of JSON, at most :data:`MAX_COMPACT_BYTES` bytes, trimming per-level detail first."""
        doc = _rounded(self.model_dump(exclude_none=True, exclude_defaults=False))
        if not doc.get("truncated"):
            doc.pop("truncated", None)
        text = orjson.dumps(doc)
        if len(text) <= MAX_COMPACT_BYTES:
            return text.decode()
        doc["truncated"] = True
        for level in doc["levels"]:
            level["metrics"] = {k: v for k, v in level["metrics"].items() if k in LEVEL_KEEP}
        while len(text := orjson.dumps(doc)) > MAX_COMPACT_BYTES and doc["levels"]:
            doc["levels"].pop()
        if len(text) > MAX_COMPACT_BYTES and "error" in doc:
            doc["error"] = doc["error"][:200]
            text = orjson.dumps(doc)
        if len(text) > MAX_COMPACT_BYTES:
            doc["scenario"] = doc["scenario"][:100]
            text = orjson.dumps(doc)
        return text.decode()


class LevelReport(BaseModel):
    """Everything measured at one concurrency level (the full result file)."""

    concurrency: int
    requests: int
    succeeded: int
    duration: float
    metrics: dict[str, float]
    distributions: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Per-request quantity (ttft, tpot, itl, e2e_latency, input_tokens, output_tokens) →
    count, mean, min, p50, p90, p95, p99, max."""
    errors: ErrorCounts = Field(default_factory=ErrorCounts)
    http_statuses: dict[str, int] = Field(default_factory=dict)
    error_samples: list[str] = Field(default_factory=list)


class FullResult(BaseModel):
    """The full result written to ``--result-file``."""

    version: Literal[1] = 1
    summary: RunnerResult
    parameters: dict[str, Any]
    levels: list[LevelReport]


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits: enough for any metric and keeps the compact JSON small."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
