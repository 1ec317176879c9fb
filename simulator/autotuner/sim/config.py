"""The simulator's settings: the engine flags it understands, with SGLang's and vLLM's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autotuner.sim.perf import default_cache_dir

Runtime = Literal["sglang", "vllm"]
RUNTIMES: tuple[str, ...] = ("sglang", "vllm")
SCHEDULE_POLICIES: tuple[str, ...] = ("lpm", "fcfs", "random", "dfs-weight")
QUANTIZATIONS: dict[str, str] = {
    "fp8": "fp8",
    "modelopt_fp8": "fp8",
    "w8a8_fp8": "fp8",
    "awq": "int4",
    "awq_marlin": "int4",
    "gptq": "int4",
    "gptq_marlin": "int4",
    "w8a8_int8": "int8",
    "int8": "int8",
}
"""``--quantization`` values and the weight format each means (see perf.WEIGHT_BYTES)."""
KV_CACHE_DTYPES: dict[str, str | None] = {
    "auto": None,
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "bf16",
    "float16": "bf16",
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}
DTYPES: dict[str, str] = {
    "auto": "bf16",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "float16": "bf16",
    "half": "bf16",
    "fp16": "bf16",
    "float32": "fp32",
    "float": "fp32",
}


@dataclass
class SimConfig:
    """Everything that shapes one simulated engine. ``None`` means "the runtime's default"."""

    model: str
    """Model name as served (``/v1/models``) and looked up in the shape catalogue."""
    served_model_name: str | None = None
    """Name clients must send in ``model``; defaults to ``model``."""
    gpu: str = "h100_sxm"
    runtime: Runtime = "sglang"
    tp: int = 1
    """Tensor-parallel size: GPUs used and the split of each step's work."""
    mem_fraction: float | None = None
    """Fraction of each GPU's memory for weights + KV cache (SGLang default 0.88, vLLM 0.9)."""
    max_running_requests: int | None = None
    """Concurrent requests in the running batch (SGLang default 4096 — KV-bound in practice; vLLM 256)."""
    schedule_policy: str | None = None
    """Waiting-queue order (SGLang default lpm, vLLM fcfs). Without a prefix cache lpm and
    dfs-weight order like fcfs; random picks uniformly."""
    chunked_prefill_size: int | None = None
    """SGLang: most prefill tokens per step; -1 disables chunking. Default by GPU memory."""
    max_num_batched_tokens: int | None = None
    """vLLM: most tokens (prefill + decode) per step. Default 8192."""
    enable_chunked_prefill: bool | None = None
    """vLLM: split long prompts across steps (default on). Off: prompts are prefilled whole."""
    enable_mixed_chunk: bool = False
    """SGLang: run prefill chunks together with decodes instead of pausing decodes."""
    max_prefill_tokens: int = 16384
    """SGLang: most new prompt tokens admitted in one prefill batch."""
    max_model_len: int | None = None
    """Longest prompt + output in tokens; defaults to the model's max_position_embeddings."""
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    dtype: str = "auto"
    time_scale: float = 1.0
    """Multiplies every simulated duration before sleeping; 0 runs as fast as the CPU allows."""
    activation_reserve_gib: float = 1.0
    """Memory per GPU kept inside the memory fraction for activations and CUDA graphs."""
    model_config: Path | None = None
    """JSON with the model's shape (Hugging Face config.json or ModelShape fields)."""
    table_cache: Path | None = field(default_factory=default_cache_dir)
    """Where AIConfigurator step-time tables are cached; ``None`` disables the cache."""
    perf_source: Literal["auto", "analytic"] = "auto"
    """``auto`` uses AIConfigurator where it has data; ``analytic`` forces the fallback."""
    default_max_tokens: int = 256
    """Output length when a request gives no max_tokens."""
    startup_delay: float = 0.0
    """Wall-clock seconds /health answers 503 after the port opens, like a model loading."""
    seed: int = 0
    """Seed for the random schedule policy."""

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    def resolved_mem_fraction(self) -> float:
        if self.mem_fraction is not None:
            return self.mem_fraction
        return 0.88 if self.runtime == "sglang" else 0.9

    def resolved_max_running(self) -> int:
        if self.max_running_requests is not None:
            return self.max_running_requests
        return 4096 if self.runtime == "sglang" else 256

    def resolved_policy(self) -> str:
        return self.schedule_policy or ("lpm" if self.runtime == "sglang" else "fcfs")

    def weight_dtype(self) -> str:
        if self.quantization:
            return QUANTIZATIONS[self.quantization]
        return DTYPES[self.dtype]

    def kv_dtype(self) -> str:
        return KV_CACHE_DTYPES[self.kv_cache_dtype] or DTYPES[self.dtype]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that makes no sense."""
        checks: list[tuple[bool, str]] = [
            (self.runtime in RUNTIMES, f"runtime must be one of {RUNTIMES}, not {self.runtime!r}"),
            (self.tp >= 1, f"tp-size must be >= 1, not {self.tp}"),
            (
                self.mem_fraction is None or 0 < self.mem_fraction <= 1,
                f"memory fraction must be in (0, 1], not {self.mem_fraction}",
            ),
            (
                self.max_running_requests is None or self.max_running_requests >= 1,
                f"max running requests must be >= 1, not {self.max_running_requests}",
            ),
            (
                self.schedule_policy is None or self.schedule_policy in SCHEDULE_POLICIES,
                f"schedule-policy must be one of {SCHEDULE_POLICIES}, not {self.schedule_policy!r}",
            ),
            (
                self.chunked_prefill_size is None
                or self.chunked_prefill_size == -1
                or self.chunked_prefill_size >= 1,
                f"chunked-prefill-size must be -1 or >= 1, not {self.chunked_prefill_size}",
            ),
            (
                self.max_num_batched_tokens is None or self.max_num_batched_tokens >= 1,
                f"max-num-batched-tokens must be >= 1, not {self.max_num_batched_tokens}",
            ),
            (
                self.max_model_len is None or self.max_model_len >= 2,
                f"max-model-len must be >= 2, not {self.max_model_len}",
            ),
            (
                self.quantization is None or self.quantization in QUANTIZATIONS,
                f"quantization must be one of {sorted(QUANTIZATIONS)}, not {self.quantization!r}",
            ),
            (
                self.kv_cache_dtype in KV_CACHE_DTYPES,
                f"kv-cache-dtype must be one of {sorted(KV_CACHE_DTYPES)}, not {self.kv_cache_dtype!r}",
            ),
            (self.dtype in DTYPES, f"dtype must be one of {sorted(DTYPES)}, not {self.dtype!r}"),
            (self.time_scale >= 0, f"time-scale must be >= 0, not {self.time_scale}"),
            (self.default_max_tokens >= 1, "default max tokens must be >= 1"),
            (self.max_prefill_tokens >= 1, "max-prefill-tokens must be >= 1"),
            (self.activation_reserve_gib >= 0, "activation reserve must be >= 0"),
            (self.startup_delay >= 0, "startup delay must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
