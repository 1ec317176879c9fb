"""External benchmark tools (genai-bench, guidellm) run as subprocesses, their results converted to the
runner's result. See runner/README.md for the versions whose output formats are supported."""

from __future__ import annotations

import argparse

from autotuner.runner.result import FullResult
from autotuner.runner.tools.base import ToolSpec, run_external
from autotuner.runner.tools.genai_bench import GENAI_BENCH
from autotuner.runner.tools.guidellm import GUIDELLM

TOOLS: dict[str, ToolSpec] = {GENAI_BENCH.name: GENAI_BENCH, GUIDELLM.name: GUIDELLM}


def run_tool(args: argparse.Namespace, params: dict[str, object]) -> FullResult:
    """Run the tool ``args.tool`` names with the runner's command-line arguments."""
    return run_external(TOOLS[args.tool], args, params)


__all__ = ["TOOLS", "run_tool"]
