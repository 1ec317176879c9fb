"""Running an external benchmark tool as a subprocess, within a time budget, and collecting its result."""

from __future__ import annotations

import argparse
import collections
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autotuner.runner.result import ErrorCounts, FullResult, LevelReport, LevelResult, RunnerResult, Tool

STARTUP_ALLOWANCE = 300.0
"""Seconds granted on top of the benchmark's own limits for the tool to start, load a tokenizer and
write its reports."""


class ToolOutputError(Exception):
    """The tool's output files are missing or not in a format this runner understands."""


Parsed = tuple[list[LevelReport], dict[str, float]]
"""Per-level reports and the overall metrics."""


@dataclass(frozen=True)
class ToolSpec:
    name: Tool
    executable: str
    command: Callable[[argparse.Namespace, Path, str], list[str]]
    """Build the command line from the runner's arguments, a work directory and the executable's path."""
    parse: Callable[[Path, dict[str, float], int], Parsed]
    """Read the results from the work directory, given the SLOs and the GPU count."""


def level_time_limit(args: argparse.Namespace, concurrency: int) -> float:
    """Longest a level may take: ``--max-duration``, else every request taking its full timeout."""
    if args.max_duration is not None:
        return float(args.max_duration)
    rounds: int = math.ceil(args.max_requests / concurrency)
    return float(args.request_timeout) * rounds


def time_budget(args: argparse.Namespace, startup_allowance: float = STARTUP_ALLOWANCE) -> float:
    """Longest the tool may run: every level's limit plus ``startup_allowance`` seconds."""
    return float(sum(level_time_limit(args, c) for c in args.concurrency)) + startup_allowance


def _forward(stream: IO[str], tail: collections.deque[str]) -> None:
    """Copy the tool's output to our stderr (stdout's last line is reserved for the result)."""
    for line in stream:
        sys.stderr.write(line)
        tail.append(line.rstrip())


def _summary(
    name: Tool, scenario: str, parsed: Parsed, duration: float, params: dict[str, object]
) -> FullResult:
    levels, overall = parsed
    errors = ErrorCounts()
    for lv in levels:
        for kind in ("http", "timeout", "connection", "stream", "other"):
            setattr(errors, kind, getattr(errors, kind) + getattr(lv.errors, kind))
    summary = RunnerResult(
        tool=name,
        scenario=scenario,
        metrics=overall,
        levels=[LevelResult(concurrency=lv.concurrency, metrics=lv.metrics) for lv in levels],
        errors=errors,
        requests=sum(lv.requests for lv in levels),
        duration=duration,
    )
    return FullResult(summary=summary, parameters=params, levels=levels)


def run_external(
    spec: ToolSpec,
    args: argparse.Namespace,
    params: dict[str, object],
    startup_allowance: float = STARTUP_ALLOWANCE,
) -> FullResult:
    """Run ``spec``'s tool; any failure (not installed, crash, overrun, unreadable output) is an error result.

    The tool is killed (with its process group) after :func:`time_budget` seconds.
    """
    scenario: str = args.scenario.text
    slo = dict(args.slo)

    def failed(message: str) -> FullResult:
        summary = RunnerResult(
            tool=spec.name, scenario=scenario, metrics={}, requests=0, duration=0.0, error=message
        )
        return FullResult(summary=summary, parameters=params, levels=[])

    exe = shutil.which(spec.executable)
    if exe is None:
        return failed(
            f"{spec.name} is not installed in this image (no {spec.executable!r} on PATH); "
            "use --tool builtin or an image that has it"
        )
    budget = time_budget(args, startup_allowance)
    tail: collections.deque[str] = collections.deque(maxlen=20)
    with tempfile.TemporaryDirectory(prefix=f"autotuner-{spec.name}-") as tmp:
        work = Path(tmp)
        cmd = spec.command(args, work, exe)
        print(
            f"running {spec.name} (time budget {budget:.0f}s): {' '.join(cmd)}", file=sys.stderr, flush=True
        )
        t0 = time.perf_counter()
        # Own session so that a timeout kills the tool's worker processes too.
        proc = subprocess.Popen(
            cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        assert proc.stdout is not None
        reader = threading.Thread(target=_forward, args=(proc.stdout, tail), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(5)
        duration = time.perf_counter() - t0
        try:
            parsed = spec.parse(work, slo, args.gpus)
        except ToolOutputError as exc:
            why = (
                f"did not finish within {budget:.0f}s" if timed_out else f"exited with code {proc.returncode}"
            )
            last = " | ".join(tail)[-600:]
            return failed(f"{spec.name} {why} and left no usable result ({exc}); last output: {last}")
    return _summary(spec.name, scenario, parsed, duration, params)
