"""External tools: their real result files (produced by genai-bench 0.0.5 and guidellm 0.8.1 against the
in-test server, see fixtures/README.md) convert to the standard metrics; the subprocess is bounded."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from autotuner.runner.cli import build_parser
from autotuner.runner.result import RunnerResult
from autotuner.runner.tools import genai_bench, guidellm
from autotuner.runner.tools.base import ToolOutputError, run_external

RUNNER = str(Path(sys.executable).parent / "autotuner-runner")
FIXTURES = Path(__file__).parent / "fixtures"


def args_for(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(
        ["--url", "http://127.0.0.1:9/v1", "--model", "tiny", "--scenario", "D(32,16)", "--max-requests", "12",
         "--concurrency", "1,4", *extra]
    )  # fmt: skip


def test_genai_bench_results_convert_to_the_standard_metrics() -> None:
    levels, overall = genai_bench.parse(FIXTURES / "genai-bench" / "ok", {}, 1)
    assert [(lv.concurrency, lv.requests, lv.succeeded) for lv in levels] == [(1, 16, 16), (4, 32, 32)]
    raw = json.loads(next((FIXTURES / "genai-bench" / "ok").glob("*concurrency_4*.json")).read_text())
    agg = raw["aggregated_metrics"]
    four = levels[1].metrics
    assert four["output_throughput"] == pytest.approx(agg["mean_output_throughput_tokens_per_s"])
    assert four["request_throughput"] == pytest.approx(agg["requests_per_second"])
    assert four["ttft_mean"] == pytest.approx(agg["stats"]["ttft"]["mean"])
    assert four["e2e_latency_p50"] == pytest.approx(agg["stats"]["e2e_latency"]["p50"])
    assert four["tpot_mean"] == pytest.approx(agg["stats"]["tpot"]["mean"], rel=1e-6)
    assert overall["output_throughput"] == max(lv.metrics["output_throughput"] for lv in levels)
    assert overall["ttft_p50"] <= overall["ttft_p90"] <= overall["ttft_p99"]
    assert overall["success_rate"] == 1.0


def test_genai_bench_run_where_every_request_failed_reports_http_errors() -> None:
    levels, overall = genai_bench.parse(FIXTURES / "genai-bench" / "all-http-500", {}, 1)
    assert levels[0].errors.http == 185
    assert levels[0].http_statuses == {"500": 185}
    assert overall == {"success_rate": 0.0, "error_count": 185.0}


def test_guidellm_report_converts_to_the_standard_metrics() -> None:
    path = FIXTURES / "guidellm" / "ok.json"
    levels, overall = guidellm.parse_report(path, {}, 2)
    raw = json.loads(path.read_text())["benchmarks"][1]["metrics"]
    assert [lv.concurrency for lv in levels] == [1, 4]
    four = levels[1].metrics
    assert four["ttft_p90"] == pytest.approx(
        raw["time_to_first_token_ms"]["successful"]["percentiles"]["p90"] / 1000
    )
    assert four["e2e_latency_mean"] == pytest.approx(raw["request_latency"]["successful"]["mean"])
    assert four["output_throughput_per_gpu"] == pytest.approx(four["output_throughput"] / 2)
    # guidellm failed one request per level itself (a data-generation error in its own log): counted, not hidden
    assert [lv.errors.other for lv in levels] == [1, 1]
    assert overall["success_rate"] == pytest.approx(22 / 24)
    assert overall["output_throughput"] == four["output_throughput"]


def test_guidellm_goodput_counts_only_sampled_requests_that_met_the_slo() -> None:
    path = FIXTURES / "guidellm" / "ok.json"
    met = guidellm.parse_report(path, {"ttft": 10.0}, 1)[0][0].metrics
    missed = guidellm.parse_report(path, {"ttft": 1e-6}, 1)[0][0].metrics
    assert met["goodput"] == pytest.approx(met["request_throughput"])
    assert missed["goodput"] == 0.0


def test_guidellm_run_against_a_failing_server_classifies_http_errors() -> None:
    levels, overall = guidellm.parse_report(FIXTURES / "guidellm" / "all-http-500.json", {}, 1)
    assert levels[0].errors.http == 5 and levels[0].errors.total == 6
    assert overall["success_rate"] == 0.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{}", "no 'benchmarks'"),
        ("not json", "cannot read"),
        ('{"benchmarks": [{"config": {}}]}', "unsupported"),
    ],
)
def test_unreadable_guidellm_reports_are_rejected_with_the_reason(
    content: str, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "benchmarks.json"
    path.write_text(content)
    with pytest.raises(ToolOutputError, match=reason):
        guidellm.parse_report(path, {}, 1)


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("D(32,16)", {"prompt_tokens": 32, "output_tokens": 16}),
        ("N(100,10)/(50,5)", {"prompt_tokens": 100, "prompt_tokens_stdev": 10.0, "output_tokens_min": 1}),
        ("U(10,20)/(4,8)", {"prompt_tokens": 15, "prompt_tokens_min": 10, "output_tokens_max": 8}),
    ],
)
def test_scenarios_map_to_guidellm_synthetic_data(
    scenario: str, expected: dict[str, object], tmp_path: Path
) -> None:
    spec = guidellm.scenario_file(args_for("--scenario", scenario, "--max-duration", "30"), tmp_path)["spec"]
    assert expected.items() <= spec["data"][0].items()
    assert spec["backend"]["target"] == "http://127.0.0.1:9"
    assert spec["profile"] == {"kind": "concurrent", "streams": [1, 4]}
    assert {"kind": "max_duration", "seconds": 30.0} in spec["constraints"]


def test_genai_bench_command_passes_the_runner_arguments(tmp_path: Path) -> None:
    cmd = genai_bench.command(
        args_for("--tokenizer", "/models/tok", "--max-duration", "90"), tmp_path, "genai-bench"
    )
    joined = " ".join(cmd)
    assert "--api-base http://127.0.0.1:9 " in joined
    assert "--model-tokenizer /models/tok" in joined
    assert "--max-time-per-run 2" in joined, "90 s rounds up to whole minutes"
    assert cmd.count("--num-concurrency") == 2


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{script}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_an_installed_tool_is_run_and_its_report_becomes_the_result(tmp_path: Path) -> None:
    # A stand-in executable that writes the real guidellm report where the scenario file says.
    _fake_tool(
        tmp_path,
        "guidellm",
        "import json, shutil, sys\n"
        "spec = json.load(open(sys.argv[sys.argv.index('--scenario') + 1]))['spec']\n"
        f"shutil.copy({str(FIXTURES / 'guidellm' / 'ok.json')!r}, spec['outputs'][0]['path'])\n",
    )
    env = os.environ | {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [RUNNER, "--url", "http://127.0.0.1:9", "--model", "tiny", "--scenario", "D(32,16)", "--max-requests", "12",
         "--concurrency", "1,4", "--tool", "guidellm", "--termination-log", str(tmp_path / "log")],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = RunnerResult.model_validate_json(proc.stdout.splitlines()[-1])
    assert result.tool == "guidellm" and [lv.concurrency for lv in result.levels] == [1, 4]
    assert result.requests == 24 and result.errors.other == 2


def test_a_tool_that_overruns_its_budget_is_killed_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tool(tmp_path, "genai-bench", "import time\nprint('working', flush=True)\ntime.sleep(600)\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    started = time.perf_counter()
    full = run_external(
        genai_bench.GENAI_BENCH,
        args_for("--max-duration", "0.5", "--concurrency", "1"),
        {},
        startup_allowance=0.5,
    )
    assert time.perf_counter() - started < 5
    assert full.summary.error is not None
    assert "did not finish within 1s" in full.summary.error and "working" in full.summary.error
