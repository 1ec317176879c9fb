"""``autotuner-runner``: benchmark an OpenAI-compatible server and print the compact JSON result.

Exit codes: 0 when at least one measured request succeeded; 2 when none did (the result is still
written, with the errors); 1 for usage errors. The compact result is written to ``--termination-log``
(default ``/dev/termination-log``; a path that cannot be written is reported on stderr and skipped) and
printed as stdout's last line; the full per-level report goes to ``--result-file`` when given.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import orjson
from autotuner.runner.client import Endpoint
from autotuner.runner.loadgen import LoadConfig, RunOutcome, run_load
from autotuner.runner.result import ErrorCounts, FullResult, LevelReport, LevelResult, RunnerResult, Tool
from autotuner.runner.scenario import SCENARIO_HELP, Scenario, ScenarioError, parse_scenario
from autotuner.runner.stats import SLO_KEYS, overall_metrics
from autotuner.runner.timescale import detect_time_scale, to_real_time

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors exit 1 (argparse's default 2 is the runner's "no request succeeded")."""
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _concurrency(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,8, got {text!r}"
        ) from None
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError(f"concurrency levels must be integers >= 1, got {text!r}")
    return levels


def _url(text: str) -> str:
    parsed = urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL with a host, got {text!r}")
    return text


def _scenario(text: str) -> Scenario:
    try:
        return parse_scenario(text)
    except ScenarioError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _slo(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or key.strip() not in SLO_KEYS:
        raise argparse.ArgumentTypeError(
            f"expected KEY=SECONDS with KEY one of {', '.join(SLO_KEYS)}, got {text!r}"
        )
    return key.strip(), _positive_float(value)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="autotuner-runner",
        description="Benchmark an OpenAI-compatible LLM server; the last stdout line is the JSON result.",
    )
    p.add_argument(
        "--url",
        type=_url,
        required=True,
        help="server base URL, e.g. http://engine:8000 (with or without /v1)",
    )
    p.add_argument("--model", required=True, help="model name sent in each request")
    p.add_argument(
        "--concurrency", type=_concurrency, default=(1,), help="comma-separated levels (default: 1)"
    )
    p.add_argument("--scenario", type=_scenario, required=True, help=f"traffic scenario: {SCENARIO_HELP}")
    p.add_argument("--max-requests", type=_positive_int, required=True, help="requests per concurrency level")
    p.add_argument("--max-duration", type=_positive_float, help="time limit per concurrency level (seconds)")
    p.add_argument(
        "--warmup", type=_non_negative_int, default=2, help="unmeasured warm-up requests (default 2)"
    )
    p.add_argument("--tool", choices=("builtin", "genai-bench", "guidellm"), default="builtin")
    p.add_argument("--result-file", type=Path, help="write the full per-level JSON report here")
    p.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG, help="compact result destination")
    p.add_argument("--endpoint", choices=[e.value for e in Endpoint], default="completions")
    p.add_argument(
        "--slo",
        type=_slo,
        action="append",
        default=[],
        metavar="KEY=SECONDS",
        help="per-request SLO for goodput; KEY in ttft, tpot, e2e_latency; repeatable",
    )
    p.add_argument("--request-timeout", type=_positive_float, default=120.0, help="seconds per request (120)")
    p.add_argument(
        "--gpus", type=_positive_int, default=1, help="GPUs serving the model, for per-GPU throughput"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for token lengths and prompt text")
    p.add_argument(
        "--time-scale",
        type=_time_scale,
        default="auto",
        help="wall seconds per real second of the server: a number, or auto (default) to ask a simulator's "
        "/sim/info; metrics are reported in real time",
    )
    p.add_argument(
        "--tokenizer",
        help="genai-bench only: tokenizer name or path (default: the model name)",
    )
    return p


def _time_scale(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or auto, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number or auto, not {text!r}")
    return value


def builtin_result(
    scenario: str,
    outcome: RunOutcome,
    slo: dict[str, float],
    gpus: int,
    params: dict[str, object],
    time_scale: float = 1.0,
) -> FullResult:
    """Turn what the load generator measured into the compact and full results (in real time)."""
    levels = outcome.levels
    slo = {name: bound * time_scale for name, bound in slo.items()}  # thresholds in wall-clock seconds
    errors = ErrorCounts()
    reports: list[LevelReport] = []
    for lv in levels:
        counts = lv.error_counts()
        for kind, n in counts.items():
            setattr(errors, kind, getattr(errors, kind) + n)
        metrics = to_real_time(lv.metrics(slo, gpus), time_scale)
        reports.append(
            LevelReport(
                concurrency=lv.concurrency,
                requests=len(lv.records),
                succeeded=len(lv.ok),
                duration=lv.duration,
                metrics=metrics,
                distributions=lv.distributions(),
                errors=ErrorCounts(**counts),
                http_statuses=lv.http_statuses(),
                error_samples=lv.error_samples(),
            )
        )
    summary = RunnerResult(
        tool="builtin",
        scenario=scenario,
        metrics=to_real_time(overall_metrics(levels, slo, gpus), time_scale),
        levels=[LevelResult(concurrency=r.concurrency, metrics=r.metrics) for r in reports],
        errors=errors,
        requests=sum(len(lv.records) for lv in levels),
        duration=outcome.duration,
        time_scale=time_scale,
    )
    return FullResult(summary=summary, parameters=params, levels=reports)


def in_real_time(full: FullResult, time_scale: float) -> FullResult:
    """An external tool's wall-clock result against a time-scaled simulator, converted to real time."""
    if time_scale == 1.0:
        return full
    summary = full.summary.model_copy(
        update={
            "metrics": to_real_time(full.summary.metrics, time_scale),
            "levels": [
                lv.model_copy(update={"metrics": to_real_time(lv.metrics, time_scale)})
                for lv in full.summary.levels
            ],
            "time_scale": time_scale,
        }
    )
    levels = [lv.model_copy(update={"metrics": to_real_time(lv.metrics, time_scale)}) for lv in full.levels]
    return full.model_copy(update={"summary": summary, "levels": levels})


def error_result(tool: Tool, scenario: str, message: str, params: dict[str, object]) -> FullResult:
    """A result for a run that could not measure anything."""
    summary = RunnerResult(tool=tool, scenario=scenario, metrics={}, requests=0, duration=0.0, error=message)
    return FullResult(summary=summary, parameters=params, levels=[])


def write_outputs(full: FullResult, termination_log: str, result_file: Path | None) -> int:
    """Write the termination message, the result file and stdout's last line; return the exit code."""
    line = full.summary.to_compact_json()
    try:
        Path(termination_log).write_text(line)
    except OSError as exc:
        print(f"warning: cannot write the termination log {termination_log}: {exc}", file=sys.stderr)
    if result_file is not None:
        try:
            result_file.parent.mkdir(parents=True, exist_ok=True)
            result_file.write_bytes(orjson.dumps(full.model_dump(), option=orjson.OPT_INDENT_2))
        except OSError as exc:
            print(f"warning: cannot write the result file {result_file}: {exc}", file=sys.stderr)
    sys.stderr.flush()
    print(line, flush=True)
    return 0 if full.summary.succeeded > 0 else 2


async def _load_until_signalled(cfg: LoadConfig) -> RunOutcome:
    """Run the load; SIGTERM or SIGINT (Job deleted, deadline exceeded) ends it early with a result."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run_load(cfg, stop=stop)


def _run(args: argparse.Namespace, params: dict[str, object]) -> FullResult:
    scenario: Scenario = args.scenario
    slo = dict(args.slo)
    time_scale = args.time_scale if args.time_scale is not None else detect_time_scale(args.url)
    params["time_scale"] = time_scale
    if args.tool != "builtin":
        from autotuner.runner.tools import run_tool

        return in_real_time(run_tool(args, params), time_scale)
    cfg = LoadConfig(
        url=args.url,
        model=args.model,
        scenario=scenario,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
        max_duration=args.max_duration,
        warmup=args.warmup,
        endpoint=Endpoint(args.endpoint),
        request_timeout=args.request_timeout,
        seed=args.seed,
    )
    outcome = asyncio.run(_load_until_signalled(cfg))
    return builtin_result(scenario.text, outcome, slo, args.gpus, params, time_scale)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params: dict[str, object] = {
        "url": args.url,
        "model": args.model,
        "endpoint": args.endpoint,
        "concurrency": list(args.concurrency),
        "max_requests": args.max_requests,
        "max_duration": args.max_duration,
        "warmup": args.warmup,
        "request_timeout": args.request_timeout,
        "slo": dict(args.slo),
        "gpus": args.gpus,
        "seed": args.seed,
    }
    try:
        full = _run(args, params)
    except Exception as exc:
        # A bug or an unforeseen environment problem must still leave a result for the operator.
        traceback.print_exc(file=sys.stderr)
        full = error_result(
            args.tool, args.scenario.text, f"runner failed: {type(exc).__name__}: {exc}", params
        )
    return write_outputs(full, args.termination_log, args.result_file)


if __name__ == "__main__":
    sys.exit(main())
