"""guidellm (``pip install guidellm``; output format of version 0.8, report ``metadata.version`` 2).

The runner writes a guidellm scenario file (``spec`` with an ``openai_http`` backend, a ``concurrent``
profile with one stream count per concurrency level, ``synthetic_text`` data, ``max_requests`` and
``max_duration`` constraints, a JSON output) and runs ``guidellm run --scenario FILE``.

Scenarios map to guidellm's synthetic data: ``D(in,out)`` → fixed ``prompt_tokens``/``output_tokens``;
``N(m,sd)/(m,sd)`` → ``*_stdev`` with a minimum of 1; ``U(lo,hi)/(lo,hi)`` → mean, ``*_min``/``*_max`` and
the standard deviation of that uniform distribution (guidellm draws from a clipped normal, not a uniform).

From each entry of ``benchmarks`` (one per concurrency, ``config.strategy.streams``), the ``successful``
statistics give: ``time_to_first_token_ms`` → ``ttft_*``; ``inter_token_latency_ms`` (guidellm's
``(latency - ttft) / (output_tokens - 1)``, the runner's TPOT) → ``tpot_mean``, ``tpot_p90`` and
``itl_mean``; ``request_latency`` (seconds) → ``e2e_latency_*``; ``output_tokens_per_second``,
``tokens_per_second``, ``requests_per_second`` (means) → the throughputs. ``request_totals`` gives the
counts: ``errored`` requests are classified from the messages of the sampled errored requests (HTTP
status, timeout, connection) with the unsampled rest as ``other``; ``incomplete`` ones (cut off by a
limit) count as ``timeout``, as in the built-in runner. ``goodput`` = ``request_throughput`` times the
fraction of the sampled successful requests that met every SLO. Overall metrics follow
:func:`autotuner.runner.stats.merge_level_metrics` (guidellm keeps no full per-request list).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from autotuner.core.metrics import Metric
from autotuner.runner.result import ErrorCounts, LevelReport
from autotuner.runner.scenario import Scenario
from autotuner.runner.stats import merge_level_metrics
from autotuner.runner.tools.base import Parsed, ToolOutputError, ToolSpec

RESULT_FILE = "benchmarks.json"


def data_spec(scenario: Scenario) -> dict[str, Any]:
    """guidellm ``synthetic_text`` data arguments for a scenario."""
    if scenario.kind == "D":
        return {
            "kind": "synthetic_text",
            "prompt_tokens": int(scenario.input_a),
            "output_tokens": int(scenario.output_a),
        }
    if scenario.kind == "N":
        return {
            "kind": "synthetic_text",
            "prompt_tokens": round(scenario.input_a),
            "prompt_tokens_stdev": scenario.input_b,
            "prompt_tokens_min": 1,
            "output_tokens": round(scenario.output_a),
            "output_tokens_stdev": scenario.output_b,
            "output_tokens_min": 1,
        }
    return {
        "kind": "synthetic_text",
        "prompt_tokens": round(scenario.mean_input),
        "prompt_tokens_stdev": (scenario.input_b - scenario.input_a) / math.sqrt(12),
        "prompt_tokens_min": int(scenario.input_a),
        "prompt_tokens_max": int(scenario.input_b),
        "output_tokens": round(scenario.mean_output),
        "output_tokens_stdev": (scenario.output_b - scenario.output_a) / math.sqrt(12),
        "output_tokens_min": int(scenario.output_a),
        "output_tokens_max": int(scenario.output_b),
    }


def scenario_file(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = [{"kind": "max_requests", "count": args.max_requests}]
    if args.max_duration is not None:
        constraints.append({"kind": "max_duration", "seconds": args.max_duration})
    return {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": args.url.rstrip("/").removesuffix("/v1"),
                "model": args.model,
                "request_format": "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions",
            },
            "profile": {"kind": "concurrent", "streams": list(args.concurrency)},
            "tokenizer": {"kind": "huggingface_auto", "model": args.tokenizer or args.model},
            "data": [data_spec(args.scenario)],
            "constraints": constraints,
            "outputs": [{"kind": "json", "path": str(work / RESULT_FILE)}],
        }
    }


def command(args: argparse.Namespace, work: Path, exe: str) -> list[str]:
    path = work / "scenario.json"
    path.write_text(json.dumps(scenario_file(args, work), indent=2))
    return [exe, "run", "--scenario", str(path), "--disable-progress"]


def _stat(metrics: dict[str, Any], name: str) -> dict[str, Any] | None:
    entry = metrics.get(name)
    if not isinstance(entry, dict):
        return None
    ok = entry.get("successful")
    return ok if isinstance(ok, dict) and ok.get("count") else None


def _classify(message: str) -> str:
    text = message.lower()
    if "httpstatuserror" in text or ("status" in text and any(f"{c}" in text for c in range(400, 600))):
        return "http"
    if "timeout" in text or "timed out" in text:
        return "timeout"
    if "connect" in text or "refused" in text:
        return "connection"
    if "stream" in text or "incomplete" in text or "remoteprotocolerror" in text:
        return "stream"
    return "other"


def _request_slo_ok(req: dict[str, Any], slo: dict[str, float]) -> bool:
    t = req.get("info", {}).get("timings", {})
    start, first, end = t.get("request_start"), t.get("first_token_iteration"), t.get("request_end")
    if start is None or first is None or end is None:
        return False
    ttft, e2e = first - start, end - start
    out = (req.get("output_metrics") or {}).get("text_tokens") or 0
    if "ttft" in slo and ttft > slo["ttft"]:
        return False
    if "tpot" in slo and out > 1 and (e2e - ttft) / (out - 1) > slo["tpot"]:
        return False
    return not ("e2e_latency" in slo and e2e > slo["e2e_latency"])


def _level(bench: dict[str, Any], slo: dict[str, float], gpus: int) -> LevelReport:
    strategy = bench["config"]["strategy"]
    concurrency = int(strategy.get("streams") or strategy.get("max_concurrency") or 1)
    m = bench["metrics"]
    totals = m["request_totals"]
    succeeded, errored, incomplete = (
        int(totals["successful"]),
        int(totals["errored"]),
        int(totals["incomplete"]),
    )
    out: dict[str, float] = {}
    if ttft := _stat(m, "time_to_first_token_ms"):
        p = ttft["percentiles"]
        out |= {
            Metric.TTFT_MEAN: ttft["mean"] / 1000,
            Metric.TTFT_P50: p["p50"] / 1000,
            Metric.TTFT_P90: p["p90"] / 1000,
            Metric.TTFT_P99: p["p99"] / 1000,
        }
    if itl := _stat(m, "inter_token_latency_ms"):
        out |= {
            Metric.TPOT_MEAN: itl["mean"] / 1000,
            Metric.TPOT_P90: itl["percentiles"]["p90"] / 1000,
            Metric.ITL_MEAN: itl["mean"] / 1000,
        }
    if lat := _stat(m, "request_latency"):
        p = lat["percentiles"]
        out |= {
            Metric.E2E_LATENCY_MEAN: lat["mean"],
            Metric.E2E_LATENCY_P50: p["p50"],
            Metric.E2E_LATENCY_P90: p["p90"],
            Metric.E2E_LATENCY_P99: p["p99"],
        }
    if succeeded:
        if ots := _stat(m, "output_tokens_per_second"):
            out[Metric.OUTPUT_THROUGHPUT] = ots["mean"]
            out[Metric.OUTPUT_THROUGHPUT_PER_GPU] = ots["mean"] / gpus
        if tps := _stat(m, "tokens_per_second"):
            out[Metric.TOTAL_THROUGHPUT] = tps["mean"]
        if rps := _stat(m, "requests_per_second"):
            out[Metric.REQUEST_THROUGHPUT] = rps["mean"]
            sampled = (bench.get("requests") or {}).get("successful") or []
            good = (
                sum(1 for r in sampled if _request_slo_ok(r, slo)) / len(sampled) if slo and sampled else 1.0
            )
            out[Metric.GOODPUT] = rps["mean"] * good
    total = succeeded + errored + incomplete
    if total:
        out[Metric.SUCCESS_RATE] = succeeded / total
    out[Metric.ERROR_COUNT] = float(errored + incomplete)
    counts = dict.fromkeys(("http", "timeout", "connection", "stream", "other"), 0)
    samples: list[str] = []
    sampled_errors = (bench.get("requests") or {}).get("errored") or []
    for req in sampled_errors[:errored]:
        msg = str((req.get("info") or {}).get("error") or "")
        kind = _classify(msg)
        counts[kind] += 1
        if len(samples) < 5 and not any(s.startswith(kind + ":") for s in samples):
            samples.append(f"{kind}: {msg[:300]}")
    counts["other"] += errored - min(errored, len(sampled_errors))
    counts["timeout"] += incomplete
    return LevelReport(
        concurrency=concurrency,
        requests=total,
        succeeded=succeeded,
        duration=float(bench.get("duration") or 0.0),
        metrics={str(k): float(v) for k, v in out.items()},
        errors=ErrorCounts(**counts),
        error_samples=samples,
    )


def parse_report(path: Path, slo: dict[str, float], gpus: int) -> Parsed:
    """Read a guidellm JSON report."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ToolOutputError(f"cannot read {path.name}: {exc}") from exc
    benches = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(benches, list) or not benches:
        raise ToolOutputError(f"{path.name}: no 'benchmarks' in the report")
    try:
        levels = sorted((_level(b, slo, gpus) for b in benches), key=lambda lv: lv.concurrency)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        version = (doc.get("metadata") or {}).get("guidellm_version", "unknown")
        raise ToolOutputError(
            f"{path.name}: unsupported guidellm report (version {version}): {exc!r}"
        ) from exc
    overall = merge_level_metrics([lv.metrics for lv in levels], [lv.succeeded for lv in levels])
    return levels, overall


def parse(work: Path, slo: dict[str, float], gpus: int) -> Parsed:
    path = work / RESULT_FILE
    if not path.exists():
        raise ToolOutputError(f"guidellm wrote no {RESULT_FILE}")
    return parse_report(path, slo, gpus)


GUIDELLM = ToolSpec(name="guidellm", executable="guidellm", command=command, parse=parse)
