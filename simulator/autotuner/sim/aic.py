"""Step-time tables from NVIDIA AIConfigurator (``aiconfigurator-core``, Apache-2.0).

AIConfigurator composes engine iterations from kernel-level measurements (GEMM, attention,
all-reduce...) taken on real GPUs for SGLang, vLLM and TensorRT-LLM. Its compiled engine
(``EngineHandle.mixed_step_breakdown``) returns one mixed prefill/decode step split into the
shared non-attention part, context attention and decode attention — exactly the components of
:class:`autotuner.sim.perf.StepTimeTable`, so a table takes ~170 calls (well under a second) plus
the engine compilation (~1-2 s).

Only models with a config bundled in the package are used (it would otherwise try to download the
config from Hugging Face); anything else raises :class:`AicUnavailable` with the reason, and the
simulator falls back to the analytic model.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

from autotuner.sim.models import ModelShape
from autotuner.sim.perf import (
    DECODE_BATCH,
    DECODE_LEN,
    PREFILL_N,
    PREFILL_PREFIX,
    TOKENS,
    PerfKey,
    StepTimeTable,
)

SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "a100_sxm", "l40s")
"""GPU types whose AIConfigurator data the simulator has been checked against."""
RUNTIMES = ("sglang", "vllm")
GEMM_QUANT: dict[str, str | None] = {"bf16": None, "fp8": "fp8"}
KV_QUANT: dict[str, str | None] = {"bf16": None, "fp8": "fp8"}


class AicUnavailable(Exception):
    """AIConfigurator cannot give data for this configuration; the message says why."""


def check_supported(shape: ModelShape, key: PerfKey) -> str:
    """The installed aiconfigurator-core version, or :class:`AicUnavailable` with the reason."""
    try:
        version = metadata.version("aiconfigurator-core")
        import aiconfigurator_core.sdk.engine  # noqa: F401
    except (metadata.PackageNotFoundError, ImportError):
        raise AicUnavailable(
            "aiconfigurator-core is not installed: pip install 'autotuner[sim-aic]'"
        ) from None
    if shape.aic_id is None:
        raise AicUnavailable(f"AIConfigurator has no data for model {shape.name}")
    if key.gpu not in SYSTEMS:
        raise AicUnavailable(f"AIConfigurator is not used for GPU {key.gpu}")
    if key.runtime not in RUNTIMES:
        raise AicUnavailable(f"AIConfigurator has no data for runtime {key.runtime}")
    if key.weight_dtype not in GEMM_QUANT:
        raise AicUnavailable(f"AIConfigurator has no {key.runtime} data for {key.weight_dtype} weights")
    if key.kv_dtype not in KV_QUANT:
        raise AicUnavailable(f"AIConfigurator has no data for a {key.kv_dtype} KV cache")
    return version


def build_table(shape: ModelShape, key: PerfKey, version: str) -> StepTimeTable:
    """Tabulate the step components for ``key`` from AIConfigurator's compiled engine."""
    from aiconfigurator_core.sdk.engine import EngineHandle

    assert shape.aic_id is not None
    # Its perf-database loader logs a warning per low-fidelity table it reads; they are not ours.
    quiet = logging.getLogger("aiconfigurator_core")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        handle: Any = EngineHandle.compile(
            shape.aic_id,
            key.gpu,
            key.runtime,
            tp_size=key.tp,
            gemm_quant_mode=GEMM_QUANT[key.weight_dtype],
            kvcache_quant_mode=KV_QUANT[key.kv_dtype],
        )
        # mixed_step_breakdown -> (total, shared non-attention, context attention, decode attention).
        # Context attention is divided by ceil(isl / ctx_tokens), so ctx_tokens = isl gives the whole
        # chunk of isl - prefix new tokens.
        shared = tuple(float(handle.mixed_step_breakdown(t, 0, t, 2, 0)[1]) for t in TOKENS)
        prefill = tuple(
            tuple(float(handle.mixed_step_breakdown(n + p, 0, n + p, 2, p)[2]) for p in PREFILL_PREFIX)
            for n in PREFILL_N
        )
        decode = tuple(
            tuple(float(handle.mixed_step_breakdown(0, b, length, 2, 0)[3]) for length in DECODE_LEN)
            for b in DECODE_BATCH
        )
    except Exception as exc:  # its errors are many types (perf data missing, engine config, ...)
        raise AicUnavailable(f"AIConfigurator failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        quiet.setLevel(level)
    return StepTimeTable(
        source="aiconfigurator",
        detail=(
            f"aiconfigurator-core {version}: measured {key.runtime} kernels on {key.gpu} "
            f"for {shape.aic_id}, tp={key.tp}, weights {key.weight_dtype}, KV cache {key.kv_dtype}"
        ),
        shared_ms=shared,
        prefill_attention_ms=prefill,
        decode_attention_ms=decode,
    )
