"""GPU memory plan: weights, KV-cache capacity, and the start-up failures a real engine has.

Per GPU: ``budget = memory * mem_fraction - activation reserve``; the weights take
``params * bytes per weight / tp``; the rest holds KV cache at
``2 * layers * ceil(kv_heads / tp) * head_dim * bytes`` per token (KV heads are replicated when
``tp`` exceeds their number). So ``capacity = (budget - weights) / kv bytes per token per GPU``.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotuner.sim.gpus import GIB, GpuSpec
from autotuner.sim.models import ModelShape
from autotuner.sim.perf import KV_BYTES, WEIGHT_BYTES

MIN_KV_TOKENS = 256
"""Below this many tokens of KV cache an engine cannot serve anything useful and refuses to start."""


class EngineStartupError(RuntimeError):
    """The engine would fail at start-up (out of memory, inconsistent limits); the message is what
    the real engine's log would make clear."""


@dataclass(frozen=True)
class MemoryPlan:
    weights_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    kv_capacity_tokens: int
    budget_bytes_per_gpu: float


def plan_memory(
    shape: ModelShape,
    gpu: GpuSpec,
    *,
    tp: int,
    mem_fraction: float,
    weight_dtype: str,
    kv_dtype: str,
    activation_reserve_gib: float,
    flag_name: str = "--mem-fraction-static",
) -> MemoryPlan:
    """The plan, or :class:`EngineStartupError` when the weights or a usable KV cache do not fit."""
    total = gpu.memory_bytes
    budget = total * mem_fraction - activation_reserve_gib * GIB
    weights = shape.num_params * WEIGHT_BYTES[weight_dtype] / tp
    kv_heads = -(-shape.num_kv_heads // tp)
    kv_per_token = 2 * shape.num_layers * kv_heads * shape.head_dim * KV_BYTES[kv_dtype]
    if weights > budget:
        raise EngineStartupError(
            f"torch.OutOfMemoryError: CUDA out of memory (simulated). Loading {shape.name} needs "
            f"{weights / GIB:.2f} GiB of weights per GPU (tp={tp}) but {flag_name}={mem_fraction:g} of the "
            f"{gpu.name}'s {total / GIB:.2f} GiB leaves {max(budget, 0) / GIB:.2f} GiB after a "
            f"{activation_reserve_gib:g} GiB activation reserve. Increase {flag_name} or tp."
        )
    capacity = int((budget - weights) // kv_per_token)
    if capacity < MIN_KV_TOKENS:
        raise EngineStartupError(
            f"RuntimeError: Not enough memory for KV cache (simulated): after {weights / GIB:.2f} GiB of "
            f"weights per GPU, {flag_name}={mem_fraction:g} leaves room for {max(capacity, 0)} tokens "
            f"(at least {MIN_KV_TOKENS} needed). Increase {flag_name}."
        )
    return MemoryPlan(weights, kv_per_token, capacity, budget)
