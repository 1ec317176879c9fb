"""Step times: how long one engine iteration takes, from a table built once at start-up.

One iteration runs a forward pass over every token scheduled in it (prefill chunks and one token
per decoding request). Its time is composed as AIConfigurator composes a mixed step:

    step = shared(T) + sum_i prefill_attention(n_i, p_i) - (k - 1) * prefill_attention(1, 0)
           + decode_attention(b, mean context length)

- ``shared(T)``: everything but attention (GEMMs, norms, tensor-parallel all-reduces, kernel
  launches) for ``T`` tokens in the batch;
- ``prefill_attention(n, p)``: attention for a chunk of ``n`` new tokens after ``p`` cached ones;
  with ``k`` chunks in one step, the fixed floor of the attention kernel is counted once;
- ``decode_attention(b, L)``: attention of ``b`` decoding requests over ``L`` cached tokens each.

The three are tabulated over grids (:data:`TOKENS`, :data:`PREFILL_N` x :data:`PREFILL_PREFIX`,
:data:`DECODE_BATCH` x :data:`DECODE_LEN`) and interpolated linearly (extrapolated linearly past
the last grid point). Tables come from AIConfigurator (:mod:`autotuner.sim.aic`) when it has data
for the model, GPU, runtime and quantization, else from the analytic roofline below.

Analytic roofline (documented constants, per GPU, with the GPU's datasheet figures from
:mod:`autotuner.sim.gpus`):

- shared(T) = max(weight bytes / (BW * 0.8), 2 * params * T / tp / (FLOPS * 0.6))
  + layers * 30 us (kernel launches) + tensor-parallel all-reduce (2 per layer, ring:
  2 (tp-1)/tp * T * hidden * 2 bytes / link bandwidth + 10 us each);
- prefill_attention(n, p) = 4 * layers * heads/tp * head_dim * n * (p + n/2) / (FLOPS * 0.5)
  + layers * 5 us;
- decode_attention(b, L) = b * L * KV bytes per token per GPU / (BW * 0.8) + layers * 5 us.

The efficiencies (0.8 of peak bandwidth, 0.6 of peak FLOPS for GEMMs, 0.5 for attention) are what
well-tuned kernels reach on these GPUs; AIConfigurator's measurements for Qwen3-8B on H200 agree
with this fallback within about 30 %.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autotuner.sim.gpus import GpuSpec
from autotuner.sim.models import ModelShape

log = logging.getLogger(__name__)

TABLE_FORMAT = 1
"""Bumped when the table layout or grids change, so that stale cache files are not read."""

TOKENS: tuple[int, ...] = (
    1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
    6144, 8192, 12288, 16384, 24576, 32768,
)  # fmt: skip
PREFILL_N: tuple[int, ...] = (1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
PREFILL_PREFIX: tuple[int, ...] = (0, 256, 1024, 4096, 16384, 32768)
DECODE_BATCH: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
DECODE_LEN: tuple[int, ...] = (16, 128, 512, 2048, 8192, 32768, 131072)

BW_EFFICIENCY = 0.8
GEMM_EFFICIENCY = 0.6
ATTENTION_EFFICIENCY = 0.5
LAYER_OVERHEAD_S = 30e-6
ATTENTION_FLOOR_PER_LAYER_S = 5e-6
ALLREDUCE_LATENCY_S = 10e-6

WEIGHT_BYTES: dict[str, float] = {"bf16": 2.0, "fp32": 4.0, "fp8": 1.0, "int8": 1.0, "int4": 0.53}
"""Bytes per weight by quantization; int4 (AWQ/GPTQ) carries ~6 % for group scales and zeros."""
KV_BYTES: dict[str, float] = {"bf16": 2.0, "fp32": 4.0, "fp8": 1.0}


@dataclass(frozen=True)
class PerfKey:
    """What a step-time table depends on."""

    model: str
    gpu: str
    runtime: str
    tp: int
    weight_dtype: str
    """One of :data:`WEIGHT_BYTES`' keys."""
    kv_dtype: str
    """One of :data:`KV_BYTES`' keys."""

    def cache_name(self, extra: str = "") -> str:
        digest = hashlib.sha256(json.dumps([asdict(self), TABLE_FORMAT, extra]).encode()).hexdigest()[:12]
        model = "".join(c if c.isalnum() or c in "-._" else "_" for c in self.model)
        return (
            f"{model}-{self.gpu}-{self.runtime}-tp{self.tp}-{self.weight_dtype}-{self.kv_dtype}-{digest}.json"
        )


def _interp1(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear ``y(x)``: flat below the grid, linearly extrapolated above it."""
    if x <= xs[0]:
        return ys[0]
    i = min(bisect.bisect_right(xs, x), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _interp2(
    x: float, y: float, xs: Sequence[float], ys: Sequence[float], grid: Sequence[Sequence[float]]
) -> float:
    if x <= xs[0]:
        return _interp1(y, ys, grid[0])
    i = min(bisect.bisect_right(xs, x), len(xs) - 1)
    lo, hi = _interp1(y, ys, grid[i - 1]), _interp1(y, ys, grid[i])
    return lo + (hi - lo) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])


@dataclass(frozen=True)
class StepTimeTable:
    """Tabulated step-time components in milliseconds (see the module docstring)."""

    source: str
    """``aiconfigurator`` or ``analytic``."""
    detail: str
    """Human-readable provenance: package version and data set, or why the fallback is used."""
    shared_ms: tuple[float, ...]
    prefill_attention_ms: tuple[tuple[float, ...], ...]
    decode_attention_ms: tuple[tuple[float, ...], ...]

    def shared(self, tokens: int) -> float:
        return _interp1(tokens, TOKENS, self.shared_ms)

    def prefill_attention(self, n: int, prefix: int) -> float:
        return _interp2(n, prefix, PREFILL_N, PREFILL_PREFIX, self.prefill_attention_ms)

    def decode_attention(self, batch: int, mean_len: float) -> float:
        return _interp2(batch, mean_len, DECODE_BATCH, DECODE_LEN, self.decode_attention_ms)

    def step_seconds(
        self, prefills: Sequence[tuple[int, int]], decode_batch: int, decode_len: float
    ) -> float:
        """Seconds for one iteration with ``prefills`` = [(new tokens, cached prefix)] chunks and
        ``decode_batch`` decoding requests of mean context ``decode_len``."""
        tokens = decode_batch + sum(n for n, _ in prefills)
        if tokens <= 0:
            return 0.0
        ms = self.shared(tokens)
        if prefills:
            attention = sum(self.prefill_attention(n, p) for n, p in prefills)
            ms += max(attention - (len(prefills) - 1) * self.prefill_attention(1, 0), 0.0)
        if decode_batch:
            ms += self.decode_attention(decode_batch, decode_len)
        return max(ms, 0.0) / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepTimeTable:
        if data.get("format") != TABLE_FORMAT:
            raise ValueError("table format differs")
        table = cls(
            source=str(data["source"]),
            detail=str(data["detail"]),
            shared_ms=tuple(float(v) for v in data["shared_ms"]),
            prefill_attention_ms=tuple(tuple(float(v) for v in row) for row in data["prefill_attention_ms"]),
            decode_attention_ms=tuple(tuple(float(v) for v in row) for row in data["decode_attention_ms"]),
        )
        shapes = (
            len(table.shared_ms) == len(TOKENS)
            and [len(r) for r in table.prefill_attention_ms] == [len(PREFILL_PREFIX)] * len(PREFILL_N)
            and [len(r) for r in table.decode_attention_ms] == [len(DECODE_LEN)] * len(DECODE_BATCH)
        )
        if not shapes:
            raise ValueError("table grid differs")
        return table


def analytic_table(shape: ModelShape, gpu: GpuSpec, key: PerfKey, reason: str) -> StepTimeTable:
    """The roofline fallback (formulas in the module docstring)."""
    tp = key.tp
    wbytes = WEIGHT_BYTES[key.weight_dtype]
    flops = gpu.bf16_flops
    if key.weight_dtype == "fp8" and gpu.fp8_flops is not None:
        flops = gpu.fp8_flops
    bw = gpu.hbm_bandwidth * BW_EFFICIENCY
    layers = shape.num_layers
    weight_bytes_per_gpu = shape.num_params * wbytes / tp
    kv_heads_per_gpu = -(-shape.num_kv_heads // tp)
    kv_per_token_per_gpu = 2 * layers * kv_heads_per_gpu * shape.head_dim * KV_BYTES[key.kv_dtype]
    heads_per_gpu = shape.num_heads / tp

    def shared(t: int) -> float:
        compute = 2 * shape.num_params * t / tp / (flops * GEMM_EFFICIENCY)
        seconds = max(weight_bytes_per_gpu / bw, compute) + layers * LAYER_OVERHEAD_S
        if tp > 1:
            message = t * shape.hidden_size * 2
            seconds += 2 * layers * (2 * (tp - 1) / tp * message / gpu.link_bandwidth + ALLREDUCE_LATENCY_S)
        return seconds * 1000

    def prefill(n: int, p: int) -> float:
        work = 4 * layers * heads_per_gpu * shape.head_dim * n * (p + n / 2)
        return (work / (gpu.bf16_flops * ATTENTION_EFFICIENCY) + layers * ATTENTION_FLOOR_PER_LAYER_S) * 1000

    def decode(b: int, length: int) -> float:
        return (b * length * kv_per_token_per_gpu / bw + layers * ATTENTION_FLOOR_PER_LAYER_S) * 1000

    return StepTimeTable(
        source="analytic",
        detail=f"analytic roofline fallback ({reason})",
        shared_ms=tuple(shared(t) for t in TOKENS),
        prefill_attention_ms=tuple(tuple(prefill(n, p) for p in PREFILL_PREFIX) for n in PREFILL_N),
        decode_attention_ms=tuple(tuple(decode(b, length) for length in DECODE_LEN) for b in DECODE_BATCH),
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autotuner" / "sim-tables"


def load_table(
    shape: ModelShape, gpu: GpuSpec, key: PerfKey, cache_dir: Path | None, *, use_aiconfigurator: bool = True
) -> StepTimeTable:
    """The step-time table for ``key``: AIConfigurator's (from the disk cache when built before),
    else the analytic fallback with the reason AIConfigurator could not be used."""
    from autotuner.sim import aic

    if not use_aiconfigurator:
        return analytic_table(shape, gpu, key, "AIConfigurator disabled by --perf-source analytic")
    try:
        version = aic.check_supported(shape, key)
    except aic.AicUnavailable as exc:
        return analytic_table(shape, gpu, key, str(exc))
    path = cache_dir / key.cache_name(version) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return StepTimeTable.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable step-time cache %s: %s", path, exc)
    try:
        table = aic.build_table(shape, key, version)
    except aic.AicUnavailable as exc:
        return analytic_table(shape, gpu, key, str(exc))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table.to_json()))
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot write step-time cache %s: %s", path, exc)
    return table
