"""The ``autotuner-sim`` command, run as the operator's local executor runs it: a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SIM = shutil.which("autotuner-sim", path=str(Path(sys.executable).parent))


def sim_command(*args: str) -> list[str]:
    assert SIM, "the autotuner-sim console script is not installed in this environment"
    return [SIM, "--no-table-cache", *args]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # Llama-3.1-8B weighs ~15 GiB: 10 % of an H100 cannot hold it.
        (
            ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--mem-fraction-static", "0.1"],
            "CUDA out of memory",
        ),
        # vLLM refuses a KV cache smaller than one max-length request (131,072 tokens here).
        (
            ["--model", "meta-llama/Llama-3.1-8B", "--runtime", "vllm", "--gpu-memory-utilization", "0.25"],
            "larger than the maximum number of tokens that can be stored in KV cache",
        ),
    ],
)
def test_overcommitted_memory_fails_at_startup_with_a_clear_message(args: list[str], needle: str) -> None:
    result = subprocess.run(sim_command("--port", "0", *args), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "listening on" not in result.stdout


def test_invalid_setting_exits_with_the_setting_named() -> None:
    result = subprocess.run(
        sim_command("--port", "0", "--model", "Qwen/Qwen3-8B", "--tp-size", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tp-size must be >= 1" in result.stderr


def test_help_says_it_is_a_simulator() -> None:
    result = subprocess.run(sim_command("--help"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "SIMULATOR" in result.stdout
    for flag in (
        "--tensor-parallel-size",
        "--mem-fraction-static",
        "--max-num-seqs",
        "--chunked-prefill-size",
    ):
        assert flag in result.stdout


def test_cli_picks_a_free_port_prints_it_and_warns_about_unknown_flags() -> None:
    proc = subprocess.Popen(
        sim_command(
            "serve",
            "Qwen/Qwen3-8B",
            "--port",
            "0",
            "--tensor-parallel-size",
            "2",
            "--enable-chunked-prefill",
            "false",
            "--trust-remote-code",
            "--disable-radix-cache",
            "--swap-space=4",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready, or returns "" if the process died
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as response:
            models = json.load(response)
        assert models["data"][0]["owned_by"] == "autotuner-simulator"
        with urllib.request.urlopen(url + "/sim/info", timeout=10) as response:
            info = json.load(response)
        assert info["num_gpus"] == 2
        assert info["chunked_prefill"] is True  # --enable-chunked-prefill is a vLLM flag; sglang chunks
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "--disable-radix-cache" in stderr and "--swap-space" in stderr
    assert "SIMULATED sglang engine" in stderr
    assert "performance source:" in stderr


def test_cli_stops_promptly_on_sigterm() -> None:
    proc = subprocess.Popen(
        sim_command("--model", "Qwen/Qwen3-8B", "--port", "0"), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("listening on")
    start = time.monotonic()
    proc.terminate()
    proc.wait(timeout=20)
    assert proc.returncode == 0
    assert time.monotonic() - start < 10
