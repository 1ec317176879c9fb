"""From settings to a ready engine: model shape, memory plan, step-time table."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autotuner.sim.config import SimConfig
from autotuner.sim.engine import Engine
from autotuner.sim.gpus import GIB, get_gpu
from autotuner.sim.memory import EngineStartupError, plan_memory
from autotuner.sim.models import resolve_model
from autotuner.sim.perf import PerfKey, load_table

log = logging.getLogger("autotuner.sim")


@dataclass(frozen=True)
class EngineInfo:
    """What the simulator tells about itself (start-up log, ``/sim/info``)."""

    model: str
    model_origin: str
    params: int
    gpu: str
    num_gpus: int
    runtime: str
    perf_source: str
    perf_detail: str
    kv_capacity_tokens: int
    weights_gib_per_gpu: float
    max_model_len: int
    max_running_requests: int
    schedule_policy: str
    prefill_budget: int
    chunked_prefill: bool
    time_scale: float
    """Wall-clock seconds per simulated second; clients divide measured times by it."""

    def banner(self) -> str:
        return (
            f"autotuner-sim: SIMULATED {self.runtime} engine, no GPU is used. model={self.model} "
            f"({self.params / 1e9:.2f}B params, shape from {self.model_origin}) gpu={self.gpu} x{self.num_gpus}; "
            f"performance source: {self.perf_detail}; KV cache {self.kv_capacity_tokens} tokens, "
            f"weights {self.weights_gib_per_gpu:.2f} GiB/GPU, max_model_len {self.max_model_len}"
        )


def build_engine(config: SimConfig) -> tuple[Engine, EngineInfo]:
    """The engine for ``config``; ``ValueError`` for bad settings, :class:`EngineStartupError` for
    the failures a real engine has at start-up (out of memory, limits that cannot hold)."""
    config.validate()
    gpu = get_gpu(config.gpu)
    resolved = resolve_model(config.model, config.model_config)
    shape = resolved.shape
    flag = "--mem-fraction-static" if config.runtime == "sglang" else "--gpu-memory-utilization"
    memory = plan_memory(
        shape,
        gpu,
        tp=config.tp,
        mem_fraction=config.resolved_mem_fraction(),
        weight_dtype=config.weight_dtype(),
        kv_dtype=config.kv_dtype(),
        activation_reserve_gib=config.activation_reserve_gib,
        flag_name=flag,
    )
    max_model_len = config.max_model_len or shape.max_position_embeddings
    if config.max_model_len and config.max_model_len > shape.max_position_embeddings:
        raise EngineStartupError(
            f"ValueError: max_model_len {config.max_model_len} exceeds the model's "
            f"max_position_embeddings {shape.max_position_embeddings}"
        )
    if config.runtime == "vllm" and memory.kv_capacity_tokens < max_model_len:
        raise EngineStartupError(
            f"ValueError: The model's max seq len ({max_model_len}) is larger than the maximum number of "
            f"tokens that can be stored in KV cache ({memory.kv_capacity_tokens}). Try increasing "
            "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine. (simulated)"
        )
    key = PerfKey(
        shape.aic_id or shape.name,
        gpu.name,
        config.runtime,
        config.tp,
        config.weight_dtype(),
        config.kv_dtype(),
    )
    table = load_table(shape, gpu, key, config.table_cache, use_aiconfigurator=config.perf_source == "auto")
    engine = Engine(config, table, memory, max_model_len)
    info = EngineInfo(
        model=config.name,
        model_origin=resolved.origin,
        params=shape.num_params,
        gpu=gpu.name,
        num_gpus=config.tp,
        runtime=config.runtime,
        perf_source=table.source,
        perf_detail=table.detail,
        kv_capacity_tokens=memory.kv_capacity_tokens,
        weights_gib_per_gpu=memory.weights_bytes_per_gpu / GIB,
        max_model_len=max_model_len,
        max_running_requests=engine.max_running,
        schedule_policy=engine.policy,
        prefill_budget=engine.step_budget,
        chunked_prefill=engine.chunked,
        time_scale=config.time_scale,
    )
    return engine, info


__all__ = ["EngineInfo", "EngineStartupError", "build_engine"]
