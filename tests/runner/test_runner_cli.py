"""The ``autotuner-runner`` console script as the benchmark Job runs it: a real subprocess against a real
server, its exit code, its termination log and stdout's last line, and its time limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from autotuner.devtools.ports import free_port
from autotuner.runner.result import MAX_COMPACT_BYTES, FullResult, RunnerResult

from tests.runner.openai_server import OpenAIServer

RUNNER = str(Path(sys.executable).parent / "autotuner-runner")
StartServer = Callable[..., OpenAIServer]


def run_cli(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    proc = subprocess.run([RUNNER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.perf_counter() - started


def common(url: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--url", url, "--model", "tiny", "--scenario", "D(16,8)",
        "--termination-log", str(tmp_path / "termination-log"), *extra,
    ]  # fmt: skip


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.rstrip("\n").splitlines()[-1]


def test_a_successful_run_writes_the_same_compact_json_to_the_termination_log_and_stdout(
    openai_server: StartServer, tmp_path: Path
) -> None:
    server = openai_server(first_token_delay=0.01)
    result_file = tmp_path / "out" / "full.json"
    proc, _ = run_cli(
        *common(server.url, tmp_path, "--concurrency", "1,4", "--max-requests", "8", "--slo", "ttft=2"),
        "--result-file", str(result_file),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = last_line(proc)
    assert (tmp_path / "termination-log").read_text() == line
    assert len(line.encode()) <= MAX_COMPACT_BYTES
    result = RunnerResult.model_validate_json(line)
    assert result.tool == "builtin" and result.scenario == "D(16,8)"
    assert [lv.concurrency for lv in result.levels] == [1, 4]
    assert result.requests == 16 and result.errors.total == 0
    assert result.metrics["success_rate"] == 1.0
    assert result.metrics["goodput"] == pytest.approx(result.metrics["request_throughput"], rel=1e-4)
    full = FullResult.model_validate_json(result_file.read_text())
    assert full.levels[1].distributions["output_tokens"]["mean"] == 8
    assert full.parameters["slo"] == {"ttft": 2.0}


def test_a_server_that_is_down_gives_a_result_with_connection_errors_and_exit_code_2(tmp_path: Path) -> None:
    proc, elapsed = run_cli(
        *common(f"http://127.0.0.1:{free_port()}", tmp_path, "--concurrency", "1,2", "--max-requests", "5")
    )
    assert proc.returncode == 2
    assert elapsed < 15
    result = RunnerResult.model_validate_json(last_line(proc))
    assert result.errors.connection == 10 and result.requests == 10
    assert result.metrics["success_rate"] == 0.0
    assert "ttft_p90" not in result.metrics


def test_a_stalled_server_is_cut_off_at_the_level_deadline(
    openai_server: StartServer, tmp_path: Path
) -> None:
    server = openai_server(mode="stall")
    proc, elapsed = run_cli(
        *common(server.url, tmp_path, "--concurrency", "1,2", "--max-requests", "100", "--max-duration", "1"),
        "--warmup", "1", "--request-timeout", "1",
    )  # fmt: skip
    # warm-up (1 s request timeout) + two 1 s levels + interpreter start-up
    assert elapsed < 1 + 2 * 1 + 8
    assert proc.returncode == 2
    result = RunnerResult.model_validate_json(last_line(proc))
    assert result.errors.timeout == 3, "one in-flight request at concurrency 1, two at 2"
    assert (tmp_path / "termination-log").read_text() == last_line(proc)


def test_an_unwritable_termination_log_is_reported_and_the_result_still_printed(
    openai_server: StartServer, tmp_path: Path
) -> None:
    server = openai_server()
    proc, _ = run_cli(
        "--url", server.url, "--model", "tiny", "--scenario", "D(4,4)", "--max-requests", "2",
        "--termination-log", str(tmp_path / "missing-dir" / "log"),
    )  # fmt: skip
    assert proc.returncode == 0
    assert "cannot write the termination log" in proc.stderr
    assert RunnerResult.model_validate_json(last_line(proc)).requests == 2


def test_many_levels_still_fit_the_termination_message_limit(
    openai_server: StartServer, tmp_path: Path
) -> None:
    server = openai_server()
    levels = ",".join(str(c) for c in range(1, 13))
    proc, _ = run_cli(
        *common(server.url, tmp_path, "--concurrency", levels, "--max-requests", "2", "--warmup", "0")
    )
    assert proc.returncode == 0, proc.stderr
    line = last_line(proc)
    assert len(line.encode()) <= MAX_COMPACT_BYTES
    result = RunnerResult.model_validate_json(line)
    assert result.truncated
    assert len(result.metrics) == 18, "the overall metrics are never trimmed"
    assert result.requests == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "D(1)"], "cannot parse scenario"),
        (["--concurrency", "0,4"], "concurrency levels must be integers >= 1"),
        (["--concurrency", "a"], "comma-separated integers"),
        (["--max-requests", "0"], "must be >= 1"),
        (["--slo", "latency=1"], "KEY one of ttft, tpot, e2e_latency"),
        (["--slo", "ttft=-1"], "positive finite number"),
        (["--tool", "aiperf"], "invalid choice"),
        (["--url", "engine:8000"], "http:// or https:// URL"),
    ],
)
def test_usage_errors_exit_1_with_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    base = {"--url": "http://127.0.0.1:9", "--model": "m", "--scenario": "D(1,1)", "--max-requests": "1"}
    base |= dict(zip(args[::2], args[1::2], strict=True))
    flat = [x for kv in base.items() for x in kv]
    proc, _ = run_cli(*flat, "--termination-log", str(tmp_path / "log"))
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("tool", ["genai-bench", "guidellm"])
def test_an_external_tool_that_is_not_installed_gives_an_error_result(tool: str, tmp_path: Path) -> None:
    env = os.environ | {"PATH": str(tmp_path)}  # a PATH on which no tool exists
    proc = subprocess.run(
        [RUNNER, *common("http://127.0.0.1:9", tmp_path, "--max-requests", "1", "--tool", tool)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    result = json.loads(last_line(proc))
    assert result["tool"] == tool
    assert f"{tool} is not installed" in result["error"]
    assert result["requests"] == 0


def test_sigterm_ends_the_run_at_once_with_a_result_for_what_was_sent(
    openai_server: StartServer, tmp_path: Path
) -> None:
    server = openai_server(mode="stall")
    proc = subprocess.Popen(
        [RUNNER, *common(server.url, tmp_path, "--concurrency", "2,4", "--max-requests", "50", "--warmup", "0")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while server.stats.in_flight < 2:
        assert time.monotonic() < deadline, "the runner never reached the server"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    started = time.perf_counter()
    proc.send_signal(15)
    out, err = proc.communicate(timeout=20)
    assert time.perf_counter() - started < 5
    assert proc.returncode == 2, err
    result = RunnerResult.model_validate_json(out.splitlines()[-1])
    assert result.errors.timeout == 2 and result.requests == 2
    assert [lv.concurrency for lv in result.levels] == [2], "later levels are not started"
    assert (tmp_path / "termination-log").read_text() == out.splitlines()[-1]
