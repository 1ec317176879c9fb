"""``python -m autotuner.devtools.executor``: the local executor as a process (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from autotuner.devtools.executor import ExecutorOptions, LocalExecutor, NotAKwokClusterError
from autotuner.devtools.executor import __doc__ as DOC

DEFAULTS = ExecutorOptions()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autotuner.devtools.executor",
        description=DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"), help="(default: $KUBECONFIG)"
    )
    p.add_argument("--namespace", help="only this namespace (default: all)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=float(os.environ.get("AUTOTUNER_SIM_TIME_SCALE", DEFAULTS.time_scale)),
        help="simulator --time-scale when the pod sets none ($AUTOTUNER_SIM_TIME_SCALE, default %(default)s)",
    )
    p.add_argument("--max-engines", type=int, default=DEFAULTS.max_engines, help="simulators at once")
    p.add_argument("--max-benchmarks", type=int, default=DEFAULTS.max_benchmarks, help="runners at once")
    p.add_argument(
        "--endpoint-timeout",
        type=float,
        default=DEFAULTS.endpoint_timeout,
        help="seconds a benchmark waits for a ready engine behind its Service",
    )
    p.add_argument("--benchmark-timeout", type=float, default=DEFAULTS.benchmark_timeout)
    p.add_argument("--sim-command", default=shlex.join(DEFAULTS.sim_command), help="simulator command")
    p.add_argument("--runner-command", default=shlex.join(DEFAULTS.runner_command), help="runner command")
    p.add_argument(
        "--log-dir", type=Path, help="keep each process's output here (default: a temporary folder)"
    )
    return p


async def _serve(executor: LocalExecutor) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    async with executor:
        logging.getLogger("autotuner.devtools.executor").info(
            "local executor running (SIMULATION: pod commands run on this machine); logs in %s",
            executor.log_dir,
        )
        with contextlib.suppress(asyncio.CancelledError):
            await executor.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.kubeconfig is None:
        print("error: give --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    options = ExecutorOptions(
        time_scale=args.time_scale,
        max_engines=args.max_engines,
        max_benchmarks=args.max_benchmarks,
        endpoint_timeout=args.endpoint_timeout,
        benchmark_timeout=args.benchmark_timeout,
        sim_command=tuple(shlex.split(args.sim_command)),
        runner_command=tuple(shlex.split(args.runner_command)),
        log_dir=args.log_dir,
    )
    try:
        asyncio.run(_serve(LocalExecutor(args.kubeconfig, namespace=args.namespace, options=options)))
    except NotAKwokClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
