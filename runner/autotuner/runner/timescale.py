"""Benchmarks of a time-scaled simulator report real-time figures.

``autotuner-sim --time-scale F`` sleeps F wall-clock seconds per simulated second, so a benchmark of it
measures times F times too short and throughputs F times too high. The runner learns F (``--time-scale``,
or by default from the simulator's ``GET /sim/info``; any other server is real time, F = 1), compares
per-request SLOs against wall-clock thresholds scaled by F, and divides times / multiplies throughputs
by F in the metrics it reports. ``duration`` stays wall-clock: it is how long the Job ran.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from autotuner.core.metrics import Metric

TIME_METRICS = frozenset(
    m.value for m in Metric if m.value.startswith(("ttft_", "tpot_", "itl_", "e2e_latency_"))
)
RATE_METRICS = frozenset(
    {
        Metric.OUTPUT_THROUGHPUT,
        Metric.OUTPUT_THROUGHPUT_PER_GPU,
        Metric.TOTAL_THROUGHPUT,
        Metric.REQUEST_THROUGHPUT,
        Metric.GOODPUT,
    }
)


def detect_time_scale(url: str, timeout: float = 3.0) -> float:
    """The simulator's time scale from ``/sim/info`` at the server's root; 1.0 for any other server."""
    parts = urlsplit(url)
    info_url = urlunsplit((parts.scheme, parts.netloc, "/sim/info", "", ""))
    try:
        with urllib.request.urlopen(info_url, timeout=timeout) as response:
            info = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return 1.0
    scale = info.get("time_scale") if isinstance(info, dict) and info.get("simulator") is True else None
    return float(scale) if isinstance(scale, int | float) and scale > 0 else 1.0


def to_real_time(metrics: Mapping[str, float], time_scale: float) -> dict[str, float]:
    """Metrics measured against a server running ``time_scale`` wall seconds per real second."""
    if time_scale == 1.0:
        return dict(metrics)
    return {
        name: value / time_scale
        if name in TIME_METRICS
        else value * time_scale
        if name in RATE_METRICS
        else value
        for name, value in metrics.items()
    }
