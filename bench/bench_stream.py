"""Event streaming bench: publish → WebSocket receive latency, deliveries/s and losses at 100 / 1,000
(/ 10,000 with --full) clients, each on its own task receiving 5 events/s; 2 replicas; RSS per 1,000
idle clients with and without permessage-deflate; a 5 s polling client as the baseline.

Everything is real: redis-server, api processes (``python -m autotuner.api.testing``, uvloop/httptools
when installed), publisher and clients in separate processes. Writes bench/results/stream.md.

    python bench/bench_stream.py [--quick | --full] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "api"))

RATE = 5.0  # events per second per task
CLIENTS_PER_WORKER = 500


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- worker processes
async def clients_worker(args: argparse.Namespace) -> None:
    """Open clients, print "ready", collect events until told to stop (stdin closes), report JSON."""
    import websockets

    urls: list[str] = json.loads(args.urls)
    latencies = array("d")
    seqs: dict[str, list[int]] = {}
    connections = []
    compression = "deflate" if args.deflate else None

    async def run(index: int) -> None:
        task = f"t{args.first + index}"
        url = f"{urls[index % len(urls)]}/api/ws/tasks/{args.namespace}/{task}"
        connection = await websockets.connect(url, compression=compression, max_queue=None, open_timeout=60)
        connections.append(connection)
        await connection.recv()  # snapshot
        got = seqs.setdefault(task, [])
        ready.set() if len(connections) == args.count else None
        if args.idle:
            return
        async for raw in connection:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "event":
                event = message["event"]
                latencies.append(now - event["data"]["t"])
                got.append(event["seq"])

    ready = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    for i in range(args.count):
        tasks.append(asyncio.create_task(run(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not stampede the accept queue
    await ready.wait()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # publishing has ended
    # Drain: stop once nothing has arrived for a second, so late events count as late, not lost.
    while True:
        before = len(latencies)
        await asyncio.sleep(1.0)
        if len(latencies) == before:
            break
    for task in tasks:
        task.cancel()
    lost = 0
    for got in seqs.values():
        if got:
            lost += (max(got) - min(got) + 1) - len(set(got))
    path = Path(tempfile.mkstemp(prefix="bench-lat-")[1])
    await asyncio.to_thread(path.write_bytes, latencies.tobytes())
    print(
        json.dumps(
            {
                "latencies": str(path),
                "received": len(latencies),
                "lost": lost,
                "tasks_seen": sum(1 for g in seqs.values() if g),
            }
        ),
        flush=True,
    )
    for connection in connections:
        connection.transport.abort()


async def publisher_worker(args: argparse.Namespace) -> None:
    """Publish RATE events/s for each of ``count`` tasks for ``seconds``; report what was published."""
    import redis.asyncio as aioredis
    from autotuner.core.events import Event, EventType, TaskRef
    from autotuner.core.stream import EventPublisher

    client = aioredis.Redis.from_url(args.redis, max_connections=64)
    publisher = EventPublisher(client, stream_key=args.stream)
    tasks = [TaskRef(namespace=args.namespace, name=f"t{i}") for i in range(args.count)]
    seq = dict.fromkeys(range(args.count), 0)
    period = 1.0 / RATE
    start = time.monotonic()
    published = 0
    tick = 0.02
    while (elapsed := time.monotonic() - start) < args.seconds:
        # Task i publishes at phase i/count of each period, so load is spread evenly over time.
        due = [i for i in range(args.count) if seq[i] < math.floor(elapsed / period - i / args.count) + 1]
        batch = []
        for i in due:
            seq[i] += 1
            batch.append(
                Event(type=EventType.TASK_PROGRESS, task=tasks[i], seq=seq[i], data={"t": time.time()})
            )
        for chunk in range(0, len(batch), 48):
            await asyncio.gather(*(publisher.publish(e) for e in batch[chunk : chunk + 48]))
        published += len(batch)
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - start - elapsed)))
    print(json.dumps({"published": published}), flush=True)
    await client.aclose()


async def poll_worker(args: argparse.Namespace) -> None:
    """``count`` clients each GET their task every 5 s (the baseline the WebSocket stream replaces)."""
    import aiohttp

    url: str = json.loads(args.urls)[0]
    durations = array("d")
    errors = 0

    async def run(index: int) -> None:
        nonlocal errors
        await asyncio.sleep(5.0 * index / args.count)
        async with aiohttp.ClientSession() as session:
            while True:
                began = time.perf_counter()
                try:
                    async with session.get(f"{url}/api/v1/namespaces/bench/tasks/t{index}") as response:
                        await response.read()
                        durations.append(time.perf_counter() - began)
                except aiohttp.ClientError:
                    errors += 1
                await asyncio.sleep(5.0)

    tasks = [asyncio.create_task(run(i)) for i in range(args.count)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    print(json.dumps({"durations": list(durations), "errors": errors}), flush=True)


# ----------------------------------------------------------------------------- orchestration
def spawn(mode: str, **options: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--worker", mode]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not False:
            argv += [f"--{key}", str(value)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_line(process: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise TimeoutError(f"worker silent for {timeout}s")
    return process.stdout.readline().strip()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_stream(
    redis_url: str, clients: int, replicas: int, seconds: float, deflate: bool = False
) -> dict[str, Any]:
    from api_support import start_api, unique

    stream = unique("bench:events")
    namespace = unique("bench")  # the per-task seq marks are global in Redis: fresh task names per run
    env = {
        "AUTOTUNER_WS_PER_MESSAGE_DEFLATE": "true" if deflate else "false",
        "LOG_LEVEL": "warning",
        "AUTOTUNER_LOG_LEVEL": "warning",
        "AUTOTUNER_HEARTBEAT_SECONDS": "30",
    }
    apis = [start_api(redis_url, stream_key=stream, env=env) for _ in range(replicas)]
    workers = []
    try:
        urls = json.dumps([a.ws for a in apis])
        for first in range(0, clients, CLIENTS_PER_WORKER):
            count = min(CLIENTS_PER_WORKER, clients - first)
            workers.append(
                spawn("clients", urls=urls, first=first, count=count, deflate=deflate, namespace=namespace)
            )
        for worker in workers:
            assert wait_line(worker, 120) == "ready"
        cpu0 = [cpu_seconds(a.process.pid) for a in apis]
        publisher = spawn(
            "publish", redis=redis_url, stream=stream, count=clients, seconds=seconds, namespace=namespace
        )
        published = json.loads(wait_line(publisher, seconds + 60))["published"]
        publisher.wait()
        cpu = sum(cpu_seconds(a.process.pid) for a in apis) - sum(cpu0)
        latencies: list[float] = []
        received = lost = 0
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
            report = json.loads(wait_line(worker, 120))
            worker.wait()
            path = Path(report["latencies"])
            values = array("d")
            values.frombytes(path.read_bytes())
            path.unlink()
            latencies += values.tolist()
            received += report["received"]
            lost += report["lost"]
        return {
            "clients": clients,
            "replicas": replicas,
            "deflate": deflate,
            "published": published,
            "received": received,
            "expected": published,
            "lost": lost + max(0, published - received),
            "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies) * 1000 if latencies else float("nan"),
            "rate": received / seconds,
            "cpu": cpu / seconds,
        }
    finally:
        for worker in workers:
            worker.kill()
        for api in apis:
            api.stop()


def run_idle_rss(redis_url: str, clients: int, deflate: bool) -> float:
    from api_support import start_api, unique

    env = {
        "AUTOTUNER_WS_PER_MESSAGE_DEFLATE": "true" if deflate else "false",
        "AUTOTUNER_LOG_LEVEL": "warning",
    }
    api = start_api(redis_url, stream_key=unique("bench:idle"), env=env)
    workers = []
    try:
        base = rss_kib(api.process.pid)
        for first in range(0, clients, CLIENTS_PER_WORKER):
            count = min(CLIENTS_PER_WORKER, clients - first)
            workers.append(
                spawn(
                    "clients",
                    urls=json.dumps([api.ws]),
                    first=first,
                    count=count,
                    deflate=deflate,
                    idle=True,
                    namespace="idle",
                )
            )
        for worker in workers:
            assert wait_line(worker, 120) == "ready"
        time.sleep(0.5)
        return (rss_kib(api.process.pid) - base) / 1024 * 1000 / clients
    finally:
        for worker in workers:
            worker.kill()
        api.stop()


def run_polling(redis_url: str, clients: int, seconds: float) -> dict[str, Any]:
    from api_support import start_api, task_object, unique

    objects = {"autotunetasks": [task_object("bench", f"t{i}") for i in range(clients)]}
    api = start_api(
        redis_url, stream_key=unique("bench:poll"), objects=objects, env={"AUTOTUNER_LOG_LEVEL": "warning"}
    )
    worker = spawn("poll", urls=json.dumps([api.http]), count=clients)
    try:
        assert wait_line(worker, 60) == "ready"
        cpu0 = cpu_seconds(api.process.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(api.process.pid) - cpu0
        assert worker.stdin is not None
        worker.stdin.close()
        report = json.loads(wait_line(worker, 30))
        durations = report["durations"]
        # An event waits for the client's next poll: uniform over the 5 s interval, plus the request.
        return {
            "clients": clients,
            "p50": 2500 + percentile(durations, 0.5) * 1000,
            "p99": 4950 + percentile(durations, 0.99) * 1000,
            "max": 5000 + max(durations) * 1000,
            "rate": len(durations) / seconds,
            "cpu": cpu / seconds,
            "errors": report["errors"],
        }
    finally:
        worker.kill()
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 clients only, short runs")
    parser.add_argument("--full", action="store_true", help="also 10,000 clients (takes minutes)")
    parser.add_argument("--seconds", type=float, default=None, help="publishing time per scenario")
    parser.add_argument("--worker", choices=["clients", "publish", "poll"], help=argparse.SUPPRESS)
    for name in ("urls", "redis", "stream", "namespace"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("first", "count"):
        parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--deflate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        worker = {"clients": clients_worker, "publish": publisher_worker, "poll": poll_worker}[args.worker]
        if args.worker == "publish":
            args.seconds = args.seconds or 10.0
        asyncio.run(worker(args))
        return

    from autotuner.devtools.redis_server import RedisServer

    seconds = args.seconds or (4.0 if args.quick else 8.0)
    redis = RedisServer().start()
    rows: list[dict[str, Any]] = []
    try:
        scenarios = (
            [(100, 1, False)]
            if args.quick
            else [(100, 1, False), (1000, 1, False), (1000, 2, False), (1000, 1, True)]
        )
        if args.full:
            scenarios += [(10_000, 1, False), (10_000, 2, False)]
        for clients, replicas, deflate in scenarios:
            rows.append(run_stream(redis.url, clients, replicas, seconds, deflate))
            print(rows[-1], file=sys.stderr, flush=True)
        idle_n = 200 if args.quick else 1000
        rss = {deflate: run_idle_rss(redis.url, idle_n, deflate) for deflate in (False, True)}
        polling = run_polling(redis.url, 100 if args.quick else 1000, 6.0 if args.quick else 10.0)
    finally:
        redis.stop()

    lines = [
        "# Event streaming bench (bench/bench_stream.py)",
        "",
        f"Machine: {os.cpu_count()} CPUs, shared. Each client subscribes to its own task; every task gets "
        f"{RATE:g} events/s for {seconds:g} s. Latency = client receive time - publisher's timestamp taken "
        "just before XADD (same clock). uvloop/httptools in use: "
        f"{'yes' if _has('uvloop') and _has('httptools') else 'no'}.",
        "",
        "| clients | replicas | deflate | published | delivered/s | lost | p50 ms | p99 ms | max ms | api CPU (cores) |",
        "|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']:,} | {r['replicas']} | {'on' if r['deflate'] else 'off'} | {r['published']:,} | "
            f"{r['rate']:,.0f} | {r['lost']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['cpu']:.2f} |"
        )
    lines += [
        "",
        f"**Baseline: 5 s polling** ({polling['clients']:,} clients, GET of the task every 5 s): "
        f"staleness p50 {polling['p50']:.0f} ms, p99 {polling['p99']:.0f} ms, max {polling['max']:.0f} ms "
        f"(wait for the next poll, uniform over 5 s, plus the measured request time); "
        f"{polling['rate']:,.0f} requests/s costing {polling['cpu']:.2f} cores; errors {polling['errors']}.",
        "",
        f"**RSS per 1,000 idle clients** (measured with {idle_n:,}): permessage-deflate off "
        f"{rss[False]:.1f} MiB, on {rss[True]:.1f} MiB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / "stream.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
