"""``autotuner-sim``: the command line of the engine simulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from autotuner.sim.config import KV_CACHE_DTYPES, QUANTIZATIONS, RUNTIMES, SCHEDULE_POLICIES, SimConfig
from autotuner.sim.gpus import GPUS
from autotuner.sim.memory import EngineStartupError
from autotuner.sim.perf import default_cache_dir

log = logging.getLogger("autotuner.sim")

DESCRIPTION = """\
SIMULATOR of an LLM inference engine (SGLang or vLLM) - no GPU, no model weights.
Serves the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics) with
latency and throughput that respond to engine flags as a real engine's do: continuous batching,
KV-cache capacity from the memory fraction (out of memory at start-up when it cannot fit),
tensor parallelism, chunked prefill. Step times come from NVIDIA AIConfigurator's measured kernel
data when it covers the model, GPU and runtime (pip install 'autotuner[sim-aic]'), else from an
analytic roofline model; the start-up log says which. Unknown engine flags are ignored with a
warning. Responses are filler text; /v1/models reports owned_by "autotuner-simulator".
"""


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="autotuner-sim", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "positional", nargs="*", metavar="MODEL", help="model name, as `vllm serve MODEL` takes it"
    )
    p.add_argument("--model", "--model-path", dest="model", help="model name (a Hugging Face id)")
    p.add_argument("--served-model-name", help="name clients send in `model` (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default 8000)")
    p.add_argument("--gpu", default="h100_sxm", choices=sorted(GPUS), help="simulated GPU type")
    p.add_argument(
        "--runtime", default="sglang", choices=RUNTIMES, help="engine whose scheduler is simulated"
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="multiplies all delays; 0 = as fast as possible"
    )
    p.add_argument(
        "--table-cache", type=Path, default=default_cache_dir(), help="step-time table cache directory"
    )
    p.add_argument(
        "--no-table-cache", action="store_true", help="build step-time tables without a disk cache"
    )
    p.add_argument(
        "--perf-source", choices=("auto", "analytic"), default="auto", help="force the analytic model"
    )
    p.add_argument(
        "--model-config", type=Path, help="JSON with the model's shape (HF config.json or shape fields)"
    )
    p.add_argument(
        "--startup-delay", type=float, default=0.0, help="seconds /health reports 503 (model loading)"
    )
    p.add_argument(
        "--default-max-tokens", type=int, default=256, help="output tokens when a request sets none"
    )
    p.add_argument(
        "--activation-reserve-gib", type=float, default=1.0, help="per-GPU memory kept for activations"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the random schedule policy")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    e = p.add_argument_group("engine flags (SGLang / vLLM spellings)")
    e.add_argument("--tp-size", "--tp", "--tensor-parallel-size", dest="tp", type=int, default=1)
    e.add_argument("--mem-fraction-static", "--gpu-memory-utilization", dest="mem_fraction", type=float)
    e.add_argument("--max-running-requests", "--max-num-seqs", dest="max_running_requests", type=int)
    e.add_argument("--schedule-policy", choices=SCHEDULE_POLICIES)
    e.add_argument("--chunked-prefill-size", type=int)
    e.add_argument("--max-num-batched-tokens", type=int)
    e.add_argument("--max-prefill-tokens", type=int, default=16384)
    e.add_argument("--enable-chunked-prefill", nargs="?", const=True, type=parse_bool)
    e.add_argument("--enable-mixed-chunk", nargs="?", const=True, default=False, type=parse_bool)
    e.add_argument("--max-model-len", "--context-length", dest="max_model_len", type=int)
    e.add_argument("--quantization", choices=sorted(QUANTIZATIONS))
    e.add_argument("--kv-cache-dtype", default="auto", choices=sorted(KV_CACHE_DTYPES))
    e.add_argument("--dtype", default="auto")
    e.add_argument("--trust-remote-code", nargs="?", const=True, default=False, type=parse_bool)
    return p


def config_from_args(argv: Sequence[str]) -> tuple[SimConfig, list[str], argparse.Namespace]:
    """The config, the unknown flags that were ignored, and the raw namespace."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(list(argv))
    positional = [a for a in args.positional if a != "serve"]
    if len(positional) > 1:
        parser.error(f"expected at most one positional MODEL, got {positional}")
    model = args.model or (positional[0] if positional else None)
    if not model:
        parser.error("a model is required: --model NAME (or a positional MODEL)")
    ignored = [u.split("=", 1)[0] for u in unknown if u.startswith("-")]
    config = SimConfig(
        model=model,
        served_model_name=args.served_model_name,
        gpu=args.gpu,
        runtime=args.runtime,
        tp=args.tp,
        mem_fraction=args.mem_fraction,
        max_running_requests=args.max_running_requests,
        schedule_policy=args.schedule_policy,
        chunked_prefill_size=args.chunked_prefill_size,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enable_chunked_prefill=args.enable_chunked_prefill,
        enable_mixed_chunk=args.enable_mixed_chunk,
        max_prefill_tokens=args.max_prefill_tokens,
        max_model_len=args.max_model_len,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        dtype=args.dtype,
        time_scale=args.time_scale,
        activation_reserve_gib=args.activation_reserve_gib,
        model_config=args.model_config,
        table_cache=None if args.no_table_cache else args.table_cache,
        perf_source=args.perf_source,
        default_max_tokens=args.default_max_tokens,
        startup_delay=args.startup_delay,
        seed=args.seed,
    )
    return config, ignored, args


async def _run(config: SimConfig, host: str, port: int) -> None:
    from autotuner.sim.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await serve(config, host=host, port=port)
    log.info("%s", server.info.banner())
    # Printed last: whoever waits for this line may signal us straight away.
    print(f"listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    config, ignored, args = config_from_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if ignored:
        log.warning("ignoring engine flags the simulator does not model: %s", " ".join(ignored))
    try:
        asyncio.run(_run(config, args.host, args.port))
    except EngineStartupError as exc:
        print(f"autotuner-sim: engine failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    except ValueError as exc:
        print(f"autotuner-sim: invalid settings: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(f"autotuner-sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
