"""Client overhead of the built-in runner: the request rate one ``autotuner-runner`` process sustains
against a server that answers instantly, and the runner's CPU seconds per 1,000 requests.

The server is ``autotuner-sim --time-scale 0`` when the simulator is installed, else the runner tests'
zero-latency OpenAI-compatible server. Each row is one runner process (a real subprocess, as the
benchmark Job runs it) at one concurrency; its CPU comes from ``os.wait4``'s resource usage of that
child, minus the CPU of a 1-request run (interpreter start-up and imports), and the server's CPU from
/proc. On a 2-core machine the runner and the server compete for the cores: a row where the server
uses about a core or more measures the server as much as the client.

Usage: ``python bench/bench_runner.py [--quick]``; prints a markdown table and writes
bench/results/runner.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCENARIO = "D(64,16)"
MODEL = "Qwen/Qwen3-8B"


def free_port() -> int:
    sys.path.insert(0, str(ROOT / "devtools"))
    from autotuner.devtools.ports import free_port as fp

    return fp()


def wait_http(port: int, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {port} not healthy after {timeout:.0f}s") from None
            time.sleep(0.1)


def start_server(port: int, kind: str) -> tuple[subprocess.Popen[bytes], str]:
    have_sim = importlib.util.find_spec("autotuner.sim") is not None and (BIN / "autotuner-sim").exists()
    if kind == "sim" or (kind == "auto" and have_sim):
        cmd = [str(BIN / "autotuner-sim"), "--port", str(port), "--model", MODEL, "--time-scale", "0"]
        name = "autotuner-sim --time-scale 0"
    else:
        code = (
            f"import sys, signal; sys.path.insert(0, {str(ROOT / 'tests' / 'runner')!r});"
            "from openai_server import OpenAIServer;"
            "s = OpenAIServer().start(); print(s.port, flush=True);"
            "signal.sigwait([signal.SIGTERM]); s.stop()"
        )
        # SIGTERM must stay blocked in every thread for sigwait to receive it.
        cmd = [
            sys.executable,
            "-c",
            "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]);" + code,
        ]
        name = "in-test zero-latency server"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc, name


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_runner(url: str, concurrency: int, requests: int) -> tuple[dict[str, Any], float]:
    """One runner process; its compact result and its CPU seconds."""
    cmd = [
        str(BIN / "autotuner-runner"), "--url", url, "--model", MODEL, "--scenario", SCENARIO,
        "--concurrency", str(concurrency), "--max-requests", str(requests), "--warmup", "0",
        "--termination-log", os.devnull,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"runner exited {proc.returncode}: {out[-500:]!r}")
    result = json.loads(out.decode().splitlines()[-1])
    return result, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and levels (~20 s)")
    parser.add_argument(
        "--server", choices=("auto", "sim", "test"), default="auto", help="auto: the simulator when installed"
    )
    opts = parser.parse_args()
    levels = [1, 32] if opts.quick else [1, 8, 32, 128]
    n = 300 if opts.quick else 2000

    port = free_port()
    server, server_name = start_server(port, opts.server)
    try:
        if "sim" not in server_name:
            assert server.stdout is not None
            port = int(server.stdout.readline())
        wait_http(port)
        url = f"http://127.0.0.1:{port}"
        _, startup_cpu = run_runner(url, 1, 1)
        rows = []
        for conc in levels:
            server_before = proc_cpu(server.pid)
            result, cpu = run_runner(url, conc, n)
            # The runner's own duration excludes its start-up, so the rates and core shares are for load.
            duration = float(result["duration"])
            server_cpu = proc_cpu(server.pid) - server_before
            metrics = result["metrics"]
            assert isinstance(metrics, dict)
            ok = round(float(metrics["success_rate"]) * n)
            load_cpu = max(cpu - startup_cpu, 0.0)
            rows.append(
                (
                    conc,
                    n,
                    ok,
                    float(metrics["request_throughput"]),
                    float(metrics["output_throughput"]),
                    1000 * load_cpu / n,
                    load_cpu / max(duration, 1e-9),
                    server_cpu / max(duration, 1e-9),
                )
            )
    finally:
        server.terminate()
        server.wait(30)

    lines = [
        f"# Runner client overhead ({'quick' if opts.quick else 'full'} run)",
        "",
        f"Server: {server_name}; scenario {SCENARIO} (16 SSE chunks per request); one runner process per row;",
        f"runner start-up CPU (1-request run, subtracted below): {startup_cpu:.2f} s; "
        f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(other work on the machine lowers the rates; the CPU per request is the steadier figure).",
        "",
        "| concurrency | requests | succeeded | requests/s | output tokens/s | runner CPU s / 1k requests "
        "| runner cores busy | server cores busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conc, req, ok, rps, tps, cpu_k, cores, server_cores in rows:
        lines.append(
            f"| {conc} | {req} | {ok} | {rps:.0f} | {tps:.0f} | {cpu_k:.2f} | {cores:.2f} | {server_cores:.2f} |"
        )
    best = max(rows, key=lambda r: r[3])
    lines += [
        "",
        f"Maximum sustained rate: **{best[3]:.0f} requests/s** (concurrency {best[0]}); "
        f"runner CPU **{min(r[5] for r in rows):.2f}-{max(r[5] for r in rows):.2f} s per 1,000 requests**.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    out = ROOT / "bench" / "results" / "runner.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)


if __name__ == "__main__":
    main()
