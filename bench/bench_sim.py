"""Simulator figures: step-time table build time, engine capacity in simulated time, and how many
requests per second one simulator process serves over HTTP at time-scale 0 (its own overhead).

Prints a markdown table and writes it to bench/results/sim.md. ``--quick`` runs smaller loads.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import aiohttp
from autotuner.sim import SimConfig, build_engine, serve
from autotuner.sim.virtual import closed_loop


async def http_rate(requests: int, concurrency: int, output_tokens: int) -> tuple[float, float]:
    """(requests/s, server+client CPU seconds per 1,000 requests) over HTTP at time-scale 0."""
    server = await serve(SimConfig(model="Qwen/Qwen3-8B", time_scale=0, table_cache=None))
    body = {"prompt": "the of and to in " * 20, "max_tokens": output_tokens, "stream": True}
    sent = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:

        async def client() -> None:
            nonlocal sent
            while sent < requests:
                sent += 1
                async with http.post(server.url + "/v1/completions", json=body) as response:
                    async for _ in response.content:
                        pass

        await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    await server.close()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return requests / elapsed, cpu / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        for label, cache in (("cold", Path(tmp)), ("cached", Path(tmp))):
            start = time.perf_counter()
            _, info = build_engine(SimConfig(model="Qwen/Qwen3-8B", gpu="h200_sxm", table_cache=cache))
            rows.append(
                (
                    f"start-up, Qwen3-8B h200 ({info.perf_source}, {label} table)",
                    f"{time.perf_counter() - start:.2f} s",
                )
            )

    for c in (1, 16, 64, 256):
        start = time.perf_counter()
        r = closed_loop(
            SimConfig(model="Qwen/Qwen3-8B", gpu="h200_sxm", table_cache=None),
            concurrency=c,
            requests=4 * c if not args.quick else 2 * c,
            prompt_tokens=1024,
            output_tokens=256,
        )
        rows.append(
            (
                f"simulated Qwen3-8B h200 sglang, D(1024,256), concurrency {c}",
                f"{r.output_throughput:,.0f} tok/s, TTFT {r.ttft_mean * 1000:.0f} ms, TPOT {r.tpot_mean * 1000:.1f} ms"
                f" (computed in {time.perf_counter() - start:.2f} s)",
            )
        )
    requests = 300 if args.quick else 2000
    rate, cpu = asyncio.run(http_rate(requests, 32, 16))
    rows.append(
        (f"HTTP at time-scale 0, 32 clients, 16 streamed tokens ({requests} requests)", f"{rate:,.0f} req/s")
    )
    rows.append(("CPU (simulator + client, one process) per 1,000 requests", f"{cpu:.2f} s"))

    table = "| measurement | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    print(table)
    out = Path(__file__).parent / "results" / "sim.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Simulator\n\n" + table)


if __name__ == "__main__":
    main()
