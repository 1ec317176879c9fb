"""External tools: their real result files (produced by genai-bench 0.0.5 and guidellm 0.8.1 against
``autotuner-sim``, see fixtures/README.md) convert to the standard metrics; the subprocess is bounded."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _genai_bench_raw(folder: str) -> dict[int, dict[str, Any]]:
    """genai-bench's own level files, by concurrency."""
    raw = (json.loads(p.read_text()) for p in (FIXTURES / "genai-bench" / folder).glob("*.json"))
    return {d["aggregated_metrics"]["num_concurrency"]: d for d in raw if "individual_request_metrics" in d}


def _guidellm_raw(name: str) -> list[dict[str, Any]]:
    benches: list[dict[str, Any]] = json.loads((FIXTURES / "guidellm" / name).read_text())["benchmarks"]
    return benches


def test_genai_bench_results_convert_to_the_standard_metrics() -> None:
    levels, overall = genai_bench.parse(FIXTURES / "genai-bench" / "ok", {}, 1)
    raw = _genai_bench_raw("ok")
    # genai-bench polls its request limit once a second, so it sent more than the 12 asked for.
    assert [(lv.concurrency, lv.requests, lv.succeeded) for lv in levels] == [(1, 14, 14), (4, 20, 20)]
    for lv in levels:
        agg = raw[lv.concurrency]["aggregated_metrics"]
        assert lv.requests == agg["num_requests"] == len(raw[lv.concurrency]["individual_request_metrics"])
        m, stats = lv.metrics, agg["stats"]
        assert m["output_throughput"] == pytest.approx(agg["mean_output_throughput_tokens_per_s"])
        assert m["total_throughput"] == pytest.approx(agg["mean_total_tokens_throughput_tokens_per_s"])
        assert m["request_throughput"] == pytest.approx(agg["requests_per_second"])
        assert m["ttft_mean"] == pytest.approx(stats["ttft"]["mean"])
        assert m["ttft_p90"] == pytest.approx(stats["ttft"]["p90"])
        assert m["e2e_latency_p50"] == pytest.approx(stats["e2e_latency"]["p50"])
        assert m["tpot_mean"] == pytest.approx(stats["tpot"]["mean"], rel=1e-6)
        assert m["ttft_p50"] <= m["ttft_p90"] <= m["ttft_p99"]
        assert m["e2e_latency_p50"] <= m["e2e_latency_p90"] <= m["e2e_latency_p99"]
    assert levels[1].metrics["output_throughput"] > levels[0].metrics["output_throughput"]
    assert overall["output_throughput"] == max(lv.metrics["output_throughput"] for lv in levels)
    assert overall["ttft_p50"] <= overall["ttft_p90"] <= overall["ttft_p99"]
    assert overall["success_rate"] == 1.0 and overall["error_count"] == 0.0


def test_genai_bench_run_where_the_server_rejected_every_request_reports_http_errors() -> None:
    levels, overall = genai_bench.parse(FIXTURES / "genai-bench" / "all-http-400", {}, 1)
    agg = _genai_bench_raw("all-http-400")[1]["aggregated_metrics"]
    assert agg["error_codes_frequency"] == {"400": 66}
    assert levels[0].errors.http == levels[0].errors.total == 66
    assert levels[0].http_statuses == {"400": 66}
    assert overall == {"success_rate": 0.0, "error_count": 66.0}
    # the simulator's reason reaches the report, so a user can see why nothing succeeded
    assert "maximum context length is 32 tokens" in levels[0].error_samples[0]


def test_guidellm_report_converts_to_the_standard_metrics() -> None:
    levels, overall = guidellm.parse_report(FIXTURES / "guidellm" / "ok.json", {}, 2)
    raw = _guidellm_raw("ok.json")
    assert [lv.concurrency for lv in levels] == [b["config"]["strategy"]["streams"] for b in raw] == [1, 4]
    # guidellm ended the first level with its 12th request still in flight and did not record it
    assert (
        [lv.requests for lv in levels] == [b["metrics"]["request_totals"]["total"] for b in raw] == [11, 12]
    )
    for lv, bench in zip(levels, raw, strict=True):
        r, m = bench["metrics"], lv.metrics
        assert lv.succeeded == r["request_totals"]["successful"] == lv.requests
        ttft = r["time_to_first_token_ms"]["successful"]
        assert m["ttft_mean"] == pytest.approx(ttft["mean"] / 1000)
        assert m["ttft_p90"] == pytest.approx(ttft["percentiles"]["p90"] / 1000)
        assert m["tpot_mean"] == pytest.approx(r["inter_token_latency_ms"]["successful"]["mean"] / 1000)
        assert m["e2e_latency_mean"] == pytest.approx(r["request_latency"]["successful"]["mean"])
        assert m["output_throughput"] == pytest.approx(r["output_tokens_per_second"]["successful"]["mean"])
        assert m["request_throughput"] == pytest.approx(r["requests_per_second"]["successful"]["mean"])
        assert m["output_throughput_per_gpu"] == pytest.approx(m["output_throughput"] / 2)
        assert m["ttft_p50"] <= m["ttft_p90"] <= m["ttft_p99"]
        assert m["e2e_latency_p50"] <= m["e2e_latency_p90"] <= m["e2e_latency_p99"]
    assert overall["success_rate"] == 1.0 and overall["error_count"] == 0.0
    assert overall["output_throughput"] == max(lv.metrics["output_throughput"] for lv in levels)
    assert overall["ttft_p50"] <= overall["ttft_p90"] <= overall["ttft_p99"]


def test_guidellm_goodput_counts_only_sampled_requests_that_met_the_slo() -> None:
    path = FIXTURES / "guidellm" / "ok.json"
    met = guidellm.parse_report(path, {"ttft": 10.0}, 1)[0][0].metrics
    missed = guidellm.parse_report(path, {"ttft": 1e-6}, 1)[0][0].metrics
    assert met["goodput"] == pytest.approx(met["request_throughput"])
    assert missed["goodput"] == 0.0


def test_guidellm_run_where_the_server_rejected_every_request_classifies_http_errors() -> None:
    levels, overall = guidellm.parse_report(FIXTURES / "guidellm" / "all-http-400.json", {}, 1)
    totals = _guidellm_raw("all-http-400.json")[0]["metrics"]["request_totals"]
    assert totals["errored"] == totals["total"] == 6
    assert levels[0].errors.http == levels[0].errors.total == 6
    assert "400 Bad Request" in levels[0].error_samples[0]
    assert overall == {"success_rate": 0.0, "error_count": 6.0}


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
    recorded = sum(b["metrics"]["request_totals"]["total"] for b in _guidellm_raw("ok.json"))
    assert result.requests == recorded == 23 and result.errors.total == 0


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
