"""GPU specifications used for memory planning and by the analytic (roofline) fallback.

Figures are the vendors' datasheet numbers for one GPU (dense, no sparsity):

| GPU        | memory (GB) | HBM bandwidth (TB/s) | BF16 TFLOPS | FP8 TFLOPS | GPU-GPU link (GB/s, one way) |
|------------|-------------|----------------------|-------------|------------|------------------------------|
| h100_sxm   | 80          | 3.35                 | 989         | 1979       | 450 (NVLink 4)               |
| h200_sxm   | 141         | 4.8                  | 989         | 1979       | 450 (NVLink 4)               |
| b200_sxm   | 180         | 8.0                  | 2250        | 4500       | 900 (NVLink 5)               |
| a100_sxm   | 80          | 2.039                | 312         | none       | 300 (NVLink 3)               |
| l40s       | 48          | 0.864                | 362         | 733        | 32 (PCIe 4.0 x16)            |

Names follow AIConfigurator's system names so that the same ``--gpu`` value selects its measured data.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type's datasheet figures."""

    name: str
    memory_bytes: int
    """Device memory (what ``nvidia-smi`` reports as total)."""
    hbm_bandwidth: float
    """Peak memory bandwidth, bytes/s."""
    bf16_flops: float
    """Dense BF16/FP16 tensor-core peak, FLOP/s."""
    fp8_flops: float | None
    """Dense FP8 tensor-core peak, FLOP/s; ``None`` when the GPU has no FP8 tensor cores."""
    link_bandwidth: float
    """GPU-to-GPU bandwidth in one direction, bytes/s (tensor-parallel all-reduce)."""


GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec("h100_sxm", 80 * 10**9, 3.35e12, 989e12, 1979e12, 450e9),
        GpuSpec("h200_sxm", 141 * 10**9, 4.8e12, 989e12, 1979e12, 450e9),
        GpuSpec("b200_sxm", 180 * 10**9, 8.0e12, 2250e12, 4500e12, 900e9),
        GpuSpec("a100_sxm", 80 * 10**9, 2.039e12, 312e12, None, 300e9),
        GpuSpec("l40s", 48 * 10**9, 0.864e12, 362e12, 733e12, 32e9),
    )
}


def get_gpu(name: str) -> GpuSpec:
    """The spec for ``name`` (case-insensitive), or a ``ValueError`` naming the known types."""
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown GPU type {name!r}; known: {', '.join(GPUS)}") from None
