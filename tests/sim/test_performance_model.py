"""The simulated engine responds to load and engine flags in the directions a real engine does.

These run the engine in simulated time (no HTTP, no sleeping), so they are exact and fast; the
HTTP path in wall-clock time is covered by test_api.py and test_runner_against_simulator.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from autotuner.sim import SimConfig, build_engine
from autotuner.sim.engine import RequestRejected
from autotuner.sim.gpus import get_gpu
from autotuner.sim.models import resolve_model
from autotuner.sim.perf import PerfKey, analytic_table, load_table
from autotuner.sim.virtual import VirtualResult, closed_loop


def run(concurrency: int, requests: int, prompt: int, output: int, **settings: Any) -> VirtualResult:
    settings.setdefault("model", "Qwen/Qwen3-8B")
    settings.setdefault("table_cache", None)
    return closed_loop(
        SimConfig(**settings),
        concurrency=concurrency,
        requests=requests,
        prompt_tokens=prompt,
        output_tokens=output,
    )


@pytest.mark.parametrize("runtime", ["sglang", "vllm"])
def test_throughput_rises_with_concurrency_then_saturates_while_latency_climbs(runtime: str) -> None:
    levels = [1, 4, 16, 64, 256, 512]
    results = [run(c, 2 * c + 8, 512, 128, runtime=runtime) for c in levels]
    throughput = [r.output_throughput for r in results]
    assert all(b > a for a, b in itertools.pairwise(throughput[:4]))  # 1 -> 64 rises
    assert throughput[2] > 8 * throughput[0]
    # Saturation: doubling 256 -> 512 gains far less than doubling did at low load...
    assert throughput[5] / throughput[4] < 1.3
    # ...while every request waits longer.
    assert results[5].e2e_mean > 1.5 * results[4].e2e_mean
    assert results[-1].tpot_mean > results[0].tpot_mean


@pytest.mark.parametrize("gpu", ["h100_sxm", "l40s"])
def test_higher_tensor_parallelism_lowers_tpot_at_batch_one(gpu: str) -> None:
    tpot = [run(1, 3, 256, 64, gpu=gpu, tp=tp).tpot_mean for tp in (1, 2, 4)]
    assert tpot[0] > tpot[1] > tpot[2]
    # Communication overhead: 4 GPUs are not 4x faster.
    assert tpot[2] > tpot[0] / 4


def test_more_max_running_requests_gives_more_throughput_at_high_concurrency() -> None:
    small = run(128, 384, 256, 128, max_running_requests=8)
    large = run(128, 384, 256, 128, max_running_requests=64)
    assert large.output_throughput > 3 * small.output_throughput
    assert large.ttft_mean < small.ttft_mean  # fewer requests queue


def test_smaller_chunked_prefill_raises_time_to_first_token_of_long_prompts() -> None:
    ttft = [run(1, 2, 8192, 8, chunked_prefill_size=size).ttft_mean for size in (128, 256, 8192)]
    assert ttft[0] > ttft[1] > ttft[2]


def test_vllm_smaller_token_budget_trades_ttft_for_tpot_under_long_prompt_load() -> None:
    small = run(16, 64, 4096, 64, runtime="vllm", max_num_batched_tokens=512)
    large = run(16, 64, 4096, 64, runtime="vllm", max_num_batched_tokens=8192)
    assert small.tpot_mean < large.tpot_mean  # decodes are not stuck behind big prefill chunks
    assert small.ttft_mean > large.ttft_mean  # prompts take more steps to prefill


def test_kv_cache_too_small_for_the_load_preempts_and_counts_it() -> None:
    # Qwen3-8B on an H100 at 0.23: ~6,400 KV tokens; 16 requests of 512 tokens need 8,192.
    tight = run(16, 48, 256, 256, mem_fraction=0.23)
    roomy = run(16, 48, 256, 256, mem_fraction=0.9)
    assert tight.preemptions > 0
    assert roomy.preemptions == 0
    assert tight.requests == roomy.requests == 48  # preempted requests are recomputed, not lost
    assert tight.output_throughput < roomy.output_throughput


def test_fp8_weights_and_kv_cache_hold_more_tokens() -> None:
    _, bf16 = build_engine(SimConfig(model="Qwen/Qwen3-8B", table_cache=None))
    _, fp8 = build_engine(
        SimConfig(model="Qwen/Qwen3-8B", table_cache=None, quantization="fp8", kv_cache_dtype="fp8")
    )
    assert fp8.weights_gib_per_gpu == pytest.approx(bf16.weights_gib_per_gpu / 2)
    assert fp8.kv_capacity_tokens > 2 * bf16.kv_capacity_tokens


def test_engine_rejects_a_request_that_can_never_fit_in_the_kv_cache() -> None:
    engine, info = build_engine(SimConfig(model="Qwen/Qwen3-8B", table_cache=None, mem_fraction=0.23))
    with pytest.raises(RequestRejected, match="KV cache"):
        engine.submit(info.kv_capacity_tokens, 10, lambda _: None)


def aic_installed() -> bool:
    try:
        import aiconfigurator_core.sdk.engine  # noqa: F401
    except ImportError:
        return False
    return True


def test_step_times_come_from_aiconfigurator_when_installed_and_are_cached(tmp_path: Path) -> None:
    _, info = build_engine(SimConfig(model="Qwen/Qwen3-8B", gpu="h200_sxm", table_cache=tmp_path))
    if not aic_installed():
        assert info.perf_source == "analytic"
        assert "aiconfigurator-core is not installed" in info.perf_detail
        return
    assert info.perf_source == "aiconfigurator"
    assert "aiconfigurator-core" in info.perf_detail
    (cached,) = tmp_path.glob("*.json")
    table = json.loads(cached.read_text())
    assert table["source"] == "aiconfigurator"
    # The cached table is what the next start-up uses (a doctored value shows through).
    table["detail"] = "from the cache"
    cached.write_text(json.dumps(table))
    _, again = build_engine(SimConfig(model="Qwen/Qwen3-8B", gpu="h200_sxm", table_cache=tmp_path))
    assert again.perf_detail == "from the cache"


def test_aiconfigurator_decode_step_matches_its_published_figure() -> None:
    """The issue quotes AIConfigurator: Qwen3-8B, h200_sxm, sglang, TPOT 5.1 ms at batch 1."""
    shape = resolve_model("Qwen/Qwen3-8B").shape
    key = PerfKey(shape.aic_id or shape.name, "h200_sxm", "sglang", 1, "bf16", "bf16")
    table = load_table(shape, get_gpu("h200_sxm"), key, None)
    step_ms = table.step_seconds([], 1, 1024 + 128) * 1000
    if table.source == "aiconfigurator":
        assert step_ms == pytest.approx(5.1, rel=0.05)
    else:  # the roofline fallback stays within 30 % of the measured figure
        assert step_ms == pytest.approx(5.1, rel=0.3)
    fallback = analytic_table(shape, get_gpu("h200_sxm"), key, "test")
    assert fallback.step_seconds([], 1, 1152) * 1000 == pytest.approx(5.1, rel=0.3)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("mistralai/Mistral-7B-Instruct-v0.3", "no data for model"),
        ("acme/Frobnicator-13B", "no data for model"),
    ],
)
def test_models_without_aiconfigurator_data_use_the_analytic_fallback_and_say_why(
    model: str, reason: str
) -> None:
    _, info = build_engine(SimConfig(model=model, table_cache=None))
    assert info.perf_source == "analytic"
    assert "analytic roofline fallback" in info.perf_detail
    if aic_installed():
        assert reason in info.perf_detail


def test_unknown_model_is_sized_from_its_name() -> None:
    _, info = build_engine(SimConfig(model="acme/Frobnicator-13B", table_cache=None))
    assert 12e9 < info.params < 16e9
    assert "guess" in info.model_origin


def test_model_config_file_gives_the_shape(tmp_path: Path) -> None:
    config = {
        "num_hidden_layers": 16,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
        "max_position_embeddings": 8192,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    _, info = build_engine(SimConfig(model="my/model", model_config=path, table_cache=None))
    assert info.params == pytest.approx(1.24e9, rel=0.02)  # Llama-3.2-1B's shape
    assert info.max_model_len == 8192
