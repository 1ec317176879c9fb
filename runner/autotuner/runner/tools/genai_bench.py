"""genai-bench (``pip install genai-bench``; output format of version 0.0.5).

genai-bench writes, per scenario and concurrency, ``<scenario>_text-to-text_num_concurrency_<c>_time_<t>s.json``
with ``aggregated_metrics`` (``run_duration``, ``requests_per_second``, ``error_codes_frequency``, ...) and
``individual_request_metrics`` (per request: ``ttft``, ``tpot``, ``e2e_latency``, ``num_input_tokens``,
``num_output_tokens``, ``error_code``); a run in which every request failed leaves
``debug_for_run_<scenario>_<c>.json`` instead, with the same layout. Times are in ``_time_unit``
(``s`` or ``ms``).

Because every request is listed, the per-request records are rebuilt and aggregated exactly like the
built-in runner's (:mod:`autotuner.runner.stats`), with each level's ``run_duration`` as its duration.
genai-bench reports no inter-token gaps, so each request contributes ``output_tokens - 1`` gaps of its
mean, ``(e2e - ttft) / (output_tokens - 1)``: ``itl_mean`` is then the token-weighted mean gap. Error
codes of 400 and above count as ``http`` errors, any other code as ``other``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from autotuner.runner.client import ErrorKind, RequestRecord
from autotuner.runner.result import ErrorCounts, LevelReport
from autotuner.runner.stats import LevelStats, overall_metrics
from autotuner.runner.tools.base import Parsed, ToolOutputError, ToolSpec, level_time_limit

_LEVEL_FILE = re.compile(r"(?:.*_num_concurrency_(\d+)_time_.*|debug_for_run_.*_(\d+))\.json")


def command(args: argparse.Namespace, work: Path, exe: str) -> list[str]:
    base = args.url.rstrip("/").removesuffix("/v1")
    minutes = max(1, math.ceil(max(level_time_limit(args, c) for c in args.concurrency) / 60))
    cmd = [
        exe, "benchmark",
        "--api-backend", "openai",
        "--api-base", base,
        "--api-key", "unused",
        "--api-model-name", args.model,
        "--model-tokenizer", args.tokenizer or args.model,
        "--task", "text-to-text",
        "--traffic-scenario", args.scenario.text,
        "--max-requests-per-run", str(args.max_requests),
        "--max-time-per-run", str(minutes),
        "--server-gpu-count", str(args.gpus),
        "--additional-request-params", json.dumps({"ignore_eos": True}),
        "--experiment-base-dir", str(work),
        "--experiment-folder-name", "run",
    ]  # fmt: skip
    for c in args.concurrency:
        cmd += ["--num-concurrency", str(c)]
    return cmd


def _record(item: dict[str, Any], scale: float) -> RequestRecord:
    code = item.get("error_code")
    if code is not None:
        kind = ErrorKind.HTTP if isinstance(code, int) and code >= 400 else ErrorKind.OTHER
        return RequestRecord(
            input_tokens=0, error=kind, status=code, detail=str(item.get("error_message") or "")[:300]
        )
    ttft = float(item["ttft"]) * scale
    e2e = float(item["e2e_latency"]) * scale
    out = int(item.get("num_output_tokens") or 0)
    rec = RequestRecord(
        input_tokens=int(item.get("num_input_tokens") or 0), output_tokens=out, ttft=ttft, e2e=e2e
    )
    if out > 1:
        rec.itls = [(e2e - ttft) / (out - 1)] * (out - 1)
    return rec


def read_level(path: Path) -> tuple[LevelStats, dict[str, int]]:
    """One level's records and genai-bench's own error-code counts."""
    try:
        doc = json.loads(path.read_text())
        agg = doc["aggregated_metrics"]
        items = doc["individual_request_metrics"]
        concurrency = int(agg["num_concurrency"])
        duration = float(agg.get("run_duration") or 0.0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ToolOutputError(f"{path.name}: not a genai-bench result file ({exc})") from exc
    scale = 0.001 if doc.get("_time_unit") == "ms" else 1.0
    try:
        records = [_record(item, scale) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolOutputError(f"{path.name}: unexpected request entry ({exc})") from exc
    codes = {str(k): int(v) for k, v in (agg.get("error_codes_frequency") or {}).items()}
    return LevelStats(concurrency=concurrency, duration=duration, records=records), codes


def parse(work: Path, slo: dict[str, float], gpus: int) -> Parsed:
    """Read every level file under ``work`` (searched recursively)."""
    files = sorted(p for p in work.rglob("*.json") if _LEVEL_FILE.fullmatch(p.name))
    if not files:
        raise ToolOutputError("no genai-bench result files found")
    levels: list[LevelStats] = []
    reports: list[LevelReport] = []
    for path in files:
        level, codes = read_level(path)
        levels.append(level)
        counts = level.error_counts()
        reports.append(
            LevelReport(
                concurrency=level.concurrency,
                requests=len(level.records),
                succeeded=len(level.ok),
                duration=level.duration,
                metrics=level.metrics(slo, gpus),
                distributions=level.distributions(),
                errors=ErrorCounts(**counts),
                http_statuses=codes or level.http_statuses(),
                error_samples=level.error_samples(),
            )
        )
    order = sorted(range(len(levels)), key=lambda i: levels[i].concurrency)
    levels = [levels[i] for i in order]
    reports = [reports[i] for i in order]
    return reports, overall_metrics(levels, slo, gpus)


GENAI_BENCH = ToolSpec(name="genai-bench", executable="genai-bench", command=command, parse=parse)
