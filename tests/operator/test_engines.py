"""Engine command lines, GPU counts and flag validation (pure)."""

from __future__ import annotations

import pytest
from autotuner.operator import engines


def test_sglang_command_line_has_the_real_launcher_and_tuned_flags() -> None:
    cmd = engines.command("sglang", "meta-llama/Llama-3.2-1B-Instruct", 30000,
                          {"tp-size": 2, "mem-fraction-static": 0.85, "trust-remote-code": True, "enable-mixed-chunk": False})  # fmt: skip
    assert cmd == [
        "python3", "-m", "sglang.launch_server", "--model-path", "meta-llama/Llama-3.2-1B-Instruct",
        "--host", "0.0.0.0", "--port", "30000", "--tp-size", "2", "--mem-fraction-static", "0.85",
        "--trust-remote-code",
    ]  # fmt: skip


def test_vllm_command_line_is_vllm_serve_with_the_model_positional() -> None:
    cmd = engines.command("vllm", "m", 8000, {"tensor-parallel-size": 4, "enable-chunked-prefill": True})
    assert cmd == ["vllm", "serve", "m", "--host", "0.0.0.0", "--port", "8000",
                   "--tensor-parallel-size", "4", "--enable-chunked-prefill"]  # fmt: skip


def test_simulator_command_line_is_autotuner_sim() -> None:
    assert engines.command("simulator", "m", 8000, {"time-scale": 0.01}) == [
        "autotuner-sim", "--host", "0.0.0.0", "--port", "8000", "--model", "m", "--time-scale", "0.01",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("runtime", "args", "override", "gpus"),
    [
        ("sglang", {"tp-size": 2, "dp-size": 2}, None, 4),
        ("sglang", {"tp": 4, "pp-size": 2}, None, 8),
        ("vllm", {"tensor-parallel-size": 2, "pipeline-parallel-size": 2, "data-parallel-size": 2}, None, 8),
        ("vllm", {}, None, 1),
        ("vllm", {"tp": 8}, 2, 2),
        ("simulator", {"tp-size": 2}, None, 2),
    ],
)
def test_gpu_count_is_the_product_of_parallel_sizes_unless_overridden(
    runtime: str, args: dict[str, engines.Value], override: int | None, gpus: int
) -> None:
    assert engines.gpu_count(runtime, args, override) == gpus


def test_a_flag_the_runtime_does_not_know_is_named_in_the_error() -> None:
    with pytest.raises(engines.EngineSpecError) as error:
        engines.check_flags("vllm", ["tensor-parallel-size", "tp-size"])
    assert error.value.reason == "UnknownEngineFlag"
    assert "'tp-size'" in str(error.value)


def test_flags_the_operator_sets_cannot_be_given() -> None:
    with pytest.raises(engines.EngineSpecError, match="'host' is set by the operator"):
        engines.check_flags("sglang", ["host"])


def test_a_non_numeric_parallel_size_is_refused() -> None:
    with pytest.raises(engines.EngineSpecError, match="positive integer"):
        engines.gpu_count("sglang", {"tp-size": "two"})
