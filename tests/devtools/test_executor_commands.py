"""How the local executor turns a pod's container command into the local command it runs."""

from __future__ import annotations

import pytest
from autotuner.devtools.executor import commands

SIM = ("autotuner-sim",)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["autotuner-sim", "--port", "8000", "--model", "m", "--tp-size", "2"],
            ["autotuner-sim", "--model", "m", "--tp-size", "2", "--time-scale", "0.02"],
        ),
        (
            [
                "python3",
                "-m",
                "sglang.launch_server",
                "--model-path",
                "m",
                "--port=30000",
                "--host",
                "0.0.0.0",
            ],
            ["autotuner-sim", "--model-path", "m", "--runtime", "sglang", "--time-scale", "0.02"],
        ),
        (
            ["vllm", "serve", "m", "--port", "8000", "--gpu-memory-utilization", "0.9"],
            [
                "autotuner-sim",
                "serve",
                "m",
                "--gpu-memory-utilization",
                "0.9",
                "--runtime",
                "vllm",
                "--time-scale",
                "0.02",
            ],
        ),
        (
            ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"],
            ["autotuner-sim", "--model", "m", "--runtime", "vllm", "--time-scale", "0.02"],
        ),
        (
            ["autotuner-sim", "--model", "m", "--time-scale", "1"],
            ["autotuner-sim", "--model", "m", "--time-scale", "1"],
        ),
    ],
)
def test_engine_command_runs_as_the_simulator_on_a_free_loopback_port(
    argv: list[str], expected: list[str]
) -> None:
    engine = commands.parse_engine(argv)
    assert commands.simulator_argv(engine, sim_command=SIM, time_scale=0.02) == [
        *expected,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]


@pytest.mark.parametrize("argv", [[], ["nginx"], ["python", "-m", "http.server"]])
def test_engine_command_without_a_local_equivalent_is_rejected_with_a_reason(argv: list[str]) -> None:
    with pytest.raises(commands.UnsupportedCommandError, match="local executor"):
        commands.parse_engine(argv)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://engine:8000", commands.ServiceRef("engine", "default-ns")),
        ("http://engine.team:8000/v1", commands.ServiceRef("engine", "team")),
        ("http://engine.team.svc:8000", commands.ServiceRef("engine", "team")),
        ("http://engine.team.svc.cluster.local:8000", commands.ServiceRef("engine", "team")),
        ("http://10.0.0.7:8000", None),
        ("http://example.com.au:80", None),
    ],
)
def test_benchmark_url_names_the_service_whose_engine_it_reaches(
    url: str, expected: commands.ServiceRef | None
) -> None:
    assert commands.service_of_url(url, "default-ns") == expected


def test_benchmark_url_is_rebased_onto_the_local_simulator_keeping_its_path() -> None:
    assert (
        commands.rebase_url("http://engine.ns.svc:8000/v1", "http://127.0.0.1:4242")
        == "http://127.0.0.1:4242/v1"
    )


def test_runner_flags_are_replaced_not_duplicated() -> None:
    args = commands.runner_args(
        ["autotuner-runner", "--url=http://a", "--termination-log", "/dev/termination-log"]
    )
    args = commands.with_flag(args, "--termination-log", "/tmp/t")
    assert args == ["--url=http://a", "--termination-log", "/tmp/t"]
    assert commands.flag_value(args, "--url") == "http://a"


def test_termination_message_is_bounded_like_a_kubelets() -> None:
    assert len(commands.termination_message("x" * 10_000).encode()) == 4096
    assert commands.log_tail("\n".join(str(i) for i in range(500))).splitlines()[-1] == "499"
    assert len(commands.log_tail("\n".join(str(i) for i in range(500))).splitlines()) == 80
