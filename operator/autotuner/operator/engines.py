"""Engine command lines: the runtime's real CLI built from an experiment's parameters and fixed args.

- SGLang: ``python3 -m sglang.launch_server --model-path M --host 0.0.0.0 --port P --tp-size N ...``
- vLLM: ``vllm serve M --host 0.0.0.0 --port P --tensor-parallel-size N ...``
- simulator: ``autotuner-sim --host 0.0.0.0 --port P --model M ...``

Flag values: ``true`` adds a bare flag, ``false`` omits it (so a flag whose engine default is on, such as
vLLM's prefix caching, is turned off with its ``no-`` spelling: ``no-enable-prefix-caching: true``).

Each runtime has an allow-list of flags (from ``python -m sglang.launch_server --help`` of v0.5 and
``vllm serve --help`` of v0.11, plus their documented aliases). A flag outside it is refused before
anything is deployed: a typo would otherwise cost a deploy and a crash loop per experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from autotuner.core.crd.task import Runtime

Value = bool | int | float | str


class EngineSpecError(ValueError):
    """The engine flags are not acceptable; ``reason`` is a task condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RuntimeInfo:
    default_port: int
    health_path: str
    tp_flags: tuple[str, ...]
    pp_flags: tuple[str, ...]
    dp_flags: tuple[str, ...]
    reserved: frozenset[str]
    """Flags the operator sets itself (model, host, port)."""
    known: frozenset[str]


_SGLANG_FLAGS: Final = frozenset(
    [
        "tokenizer-path",
        "tokenizer-mode",
        "skip-tokenizer-init",
        "load-format",
        "model-loader-extra-config",
        "trust-remote-code",
        "context-length",
        "is-embedding",
        "enable-multimodal",
        "revision",
        "model-impl",
        "dtype",
        "kv-cache-dtype",
        "quantization",
        "quantization-param-path",
        "device",
        "served-model-name",
        "chat-template",
        "completion-template",
        "file-storage-path",
        "enable-cache-report",
        "reasoning-parser",
        "tool-call-parser",
        "mem-fraction-static",
        "max-running-requests",
        "max-queued-requests",
        "max-total-tokens",
        "chunked-prefill-size",
        "max-prefill-tokens",
        "schedule-policy",
        "schedule-conservativeness",
        "page-size",
        "hybrid-kvcache-ratio",
        "swa-full-tokens-ratio",
        "disable-hybrid-swa-memory",
        "cpu-offload-gb",
        "tp-size",
        "tensor-parallel-size",
        "tp",
        "pp-size",
        "pipeline-parallel-size",
        "pp",
        "dp-size",
        "data-parallel-size",
        "dp",
        "ep-size",
        "expert-parallel-size",
        "ep",
        "max-micro-batch-size",
        "load-balance-method",
        "stream-interval",
        "stream-output",
        "random-seed",
        "constrained-json-whitespace-pattern",
        "watchdog-timeout",
        "dist-timeout",
        "download-dir",
        "base-gpu-id",
        "gpu-id-step",
        "sleep-on-idle",
        "log-level",
        "log-level-http",
        "log-requests",
        "log-requests-level",
        "show-time-cost",
        "enable-metrics",
        "bucket-time-to-first-token",
        "bucket-e2e-request-latency",
        "bucket-inter-token-latency",
        "collect-tokens-histogram",
        "decode-log-interval",
        "enable-request-time-stats-logging",
        "api-key",
        "enable-cache-report",
        "dist-init-addr",
        "nnodes",
        "node-rank",
        "json-model-override-args",
        "preferred-sampling-params",
        "enable-lora",
        "max-lora-rank",
        "lora-target-modules",
        "lora-paths",
        "max-loras-per-batch",
        "lora-backend",
        "attention-backend",
        "prefill-attention-backend",
        "decode-attention-backend",
        "sampling-backend",
        "grammar-backend",
        "mm-attention-backend",
        "speculative-algorithm",
        "speculative-draft-model-path",
        "speculative-num-steps",
        "speculative-eagle-topk",
        "speculative-num-draft-tokens",
        "speculative-accept-threshold-single",
        "speculative-accept-threshold-acc",
        "speculative-token-map",
        "enable-double-sparsity",
        "disable-radix-cache",
        "cuda-graph-max-bs",
        "cuda-graph-bs",
        "disable-cuda-graph",
        "disable-cuda-graph-padding",
        "enable-profile-cuda-graph",
        "enable-nccl-nvls",
        "enable-symm-mem",
        "enable-tokenizer-batch-encode",
        "disable-outlines-disk-cache",
        "disable-custom-all-reduce",
        "enable-mscclpp",
        "disable-overlap-schedule",
        "enable-mixed-chunk",
        "enable-dp-attention",
        "enable-dp-lm-head",
        "enable-two-batch-overlap",
        "enable-torch-compile",
        "torch-compile-max-bs",
        "torchao-config",
        "enable-nan-detection",
        "enable-p2p-check",
        "triton-attention-reduce-in-fp32",
        "triton-attention-num-kv-splits",
        "num-continuous-decode-steps",
        "delete-ckpt-after-loading",
        "enable-memory-saver",
        "allow-auto-truncate",
        "enable-custom-logit-processor",
        "flashinfer-mla-disable-ragged",
        "disable-shared-experts-fusion",
        "disable-chunked-prefix-cache",
        "disable-fast-image-processor",
        "enable-return-hidden-states",
        "enable-hierarchical-cache",
        "hicache-ratio",
        "hicache-size",
        "hicache-write-policy",
        "hicache-io-backend",
        "hicache-storage-backend",
        "moe-a2a-backend",
        "moe-runner-backend",
        "enable-eplb",
        "ep-num-redundant-experts",
        "enable-deterministic-inference",
        "warmups",
        "disaggregation-mode",
    ]
)

_VLLM_FLAGS: Final = frozenset(
    [
        "tokenizer",
        "tokenizer-mode",
        "trust-remote-code",
        "dtype",
        "seed",
        "revision",
        "code-revision",
        "tokenizer-revision",
        "max-model-len",
        "quantization",
        "enforce-eager",
        "max-seq-len-to-capture",
        "max-logprobs",
        "disable-sliding-window",
        "disable-cascade-attn",
        "skip-tokenizer-init",
        "served-model-name",
        "hf-overrides",
        "hf-config-path",
        "generation-config",
        "override-generation-config",
        "enable-sleep-mode",
        "model-impl",
        "rope-scaling",
        "rope-theta",
        "load-format",
        "download-dir",
        "safetensors-load-strategy",
        "model-loader-extra-config",
        "guided-decoding-backend",
        "reasoning-parser",
        "distributed-executor-backend",
        "pipeline-parallel-size",
        "pp",
        "tensor-parallel-size",
        "tp",
        "data-parallel-size",
        "dp",
        "data-parallel-size-local",
        "data-parallel-address",
        "data-parallel-rpc-port",
        "data-parallel-backend",
        "enable-expert-parallel",
        "enable-eplb",
        "max-parallel-loading-workers",
        "disable-custom-all-reduce",
        "worker-cls",
        "block-size",
        "gpu-memory-utilization",
        "swap-space",
        "kv-cache-dtype",
        "num-gpu-blocks-override",
        "enable-prefix-caching",
        "no-enable-prefix-caching",
        "prefix-caching-hash-algo",
        "cpu-offload-gb",
        "calculate-kv-scales",
        "kv-cache-memory-bytes",
        "max-num-batched-tokens",
        "max-num-seqs",
        "max-num-partial-prefills",
        "max-long-partial-prefills",
        "long-prefill-token-threshold",
        "cuda-graph-sizes",
        "num-lookahead-slots",
        "scheduling-policy",
        "enable-chunked-prefill",
        "no-enable-chunked-prefill",
        "disable-chunked-mm-input",
        "scheduler-cls",
        "async-scheduling",
        "speculative-config",
        "compilation-config",
        "kv-transfer-config",
        "kv-events-config",
        "additional-config",
        "limit-mm-per-prompt",
        "mm-processor-kwargs",
        "enable-lora",
        "max-loras",
        "max-lora-rank",
        "lora-extra-vocab-size",
        "lora-dtype",
        "max-cpu-loras",
        "fully-sharded-loras",
        "lora-modules",
        "disable-log-stats",
        "disable-log-requests",
        "enable-log-requests",
        "uvicorn-log-level",
        "api-key",
        "chat-template",
        "chat-template-content-format",
        "response-role",
        "enable-auto-tool-choice",
        "tool-call-parser",
        "tool-parser-plugin",
        "enable-prompt-tokens-details",
        "enable-server-load-tracking",
        "enable-force-include-usage",
        "max-log-len",
        "disable-fastapi-docs",
        "enable-request-id-headers",
        "otlp-traces-endpoint",
        "collect-detailed-traces",
        "show-hidden-metrics-for-version",
    ]
)

_SIMULATOR_FLAGS: Final = frozenset(
    [
        "gpu",
        "runtime",
        "time-scale",
        "table-cache",
        "no-table-cache",
        "perf-source",
        "model-config",
        "startup-delay",
        "default-max-tokens",
        "activation-reserve-gib",
        "seed",
        "log-level",
        "served-model-name",
        "tp-size",
        "tp",
        "tensor-parallel-size",
        "mem-fraction-static",
        "gpu-memory-utilization",
        "max-running-requests",
        "max-num-seqs",
        "schedule-policy",
        "chunked-prefill-size",
        "max-num-batched-tokens",
        "max-prefill-tokens",
        "enable-chunked-prefill",
        "enable-mixed-chunk",
        "max-model-len",
        "quantization",
        "kv-cache-dtype",
        "dtype",
        "trust-remote-code",
    ]
)

RUNTIMES: Final[Mapping[str, RuntimeInfo]] = {
    Runtime.SGLANG: RuntimeInfo(
        default_port=30000,
        health_path="/health",
        tp_flags=("tp-size", "tensor-parallel-size", "tp"),
        pp_flags=("pp-size", "pipeline-parallel-size", "pp"),
        dp_flags=("dp-size", "data-parallel-size", "dp"),
        reserved=frozenset({"model-path", "model", "host", "port"}),
        known=_SGLANG_FLAGS,
    ),
    Runtime.VLLM: RuntimeInfo(
        default_port=8000,
        health_path="/health",
        tp_flags=("tensor-parallel-size", "tp"),
        pp_flags=("pipeline-parallel-size", "pp"),
        dp_flags=("data-parallel-size", "dp"),
        reserved=frozenset({"model", "host", "port"}),
        known=_VLLM_FLAGS,
    ),
    # The simulator takes both engines' spellings (it stands in for either).
    Runtime.SIMULATOR: RuntimeInfo(
        default_port=8000,
        health_path="/health",
        tp_flags=("tp-size", "tensor-parallel-size", "tp"),
        pp_flags=(),
        dp_flags=(),
        reserved=frozenset({"model", "model-path", "host", "port"}),
        known=_SIMULATOR_FLAGS,
    ),
}


def runtime_info(runtime: str) -> RuntimeInfo:
    try:
        return RUNTIMES[runtime]
    except KeyError:
        raise EngineSpecError("InvalidSpec", f"unknown runtime {runtime!r}") from None


def check_flags(runtime: str, names: list[str]) -> None:
    """Raise :class:`EngineSpecError` naming the first flag the runtime does not accept."""
    info = runtime_info(runtime)
    for name in names:
        if name in info.reserved:
            raise EngineSpecError(
                "InvalidSpec", f"flag {name!r} is set by the operator and cannot be given or tuned"
            )
        if name not in info.known:
            raise EngineSpecError(
                "UnknownEngineFlag",
                f"flag {name!r} is not a known {runtime} flag (engine.args or searchSpace)",
            )


def _factor(args: Mapping[str, Value], flags: tuple[str, ...]) -> int:
    for flag in flags:
        if flag in args:
            value = args[flag]
            try:
                number = int(value) if not isinstance(value, bool) else -1
            except (TypeError, ValueError):
                number = -1
            if number < 1:
                raise EngineSpecError(
                    "InvalidSpec", f"flag {flag!r} must be a positive integer, got {value!r}"
                )
            return number
    return 1


def gpu_count(runtime: str, args: Mapping[str, Value], override: int | None = None) -> int:
    """GPUs one engine needs: ``gpusPerEngine`` when given, else tensor x pipeline x data parallel size."""
    if override is not None:
        return override
    info = runtime_info(runtime)
    return _factor(args, info.tp_flags) * _factor(args, info.pp_flags) * _factor(args, info.dp_flags)


def format_value(value: Value) -> str:
    # repr keeps a float's shortest round-trip form: 0.85 stays "0.85", never "0.8500000000000001".
    return repr(value) if isinstance(value, float) else str(value)


def flag_args(args: Mapping[str, Value]) -> list[str]:
    """``{"tp-size": 2, "trust-remote-code": True, "x": False}`` → ``["--tp-size", "2", "--trust-remote-code"]``."""
    out: list[str] = []
    for name, value in args.items():
        if value is True:
            out.append(f"--{name}")
        elif value is False:
            continue
        else:
            out.extend([f"--{name}", format_value(value)])
    return out


def command(runtime: str, model: str, port: int, args: Mapping[str, Value]) -> list[str]:
    """The engine container's full command line (fixed args first, then the tuned ones)."""
    flags = flag_args(args)
    if runtime == Runtime.SGLANG:
        return [
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            model,
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            *flags,
        ]
    if runtime == Runtime.VLLM:
        return ["vllm", "serve", model, "--host", "0.0.0.0", "--port", str(port), *flags]
    if runtime == Runtime.SIMULATOR:
        return ["autotuner-sim", "--host", "0.0.0.0", "--port", str(port), "--model", model, *flags]
    raise EngineSpecError("InvalidSpec", f"unknown runtime {runtime!r}")
