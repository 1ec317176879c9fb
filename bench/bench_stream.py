"""Event streaming bench: publish → WebSocket receive latency, deliveries/s, losses and api CPU per
delivery at 100 and 1,000 clients (each on its own task receiving 5 events/s), 1,000 on 2 replicas and
with permessage-deflate; RSS per 1,000 idle clients with and without permessage-deflate; a 5 s polling
client as the baseline. ``--full`` adds uvicorn's legacy ``websockets`` implementation at 1,000 clients
and 10,000 clients (10 per task: 50,000 deliveries/s) on 1 and 2 replicas.

Everything is real: redis-server, api processes (``python -m autotuner.api.testing``, uvloop/httptools
when installed), publisher and clients in separate processes. The clients are a minimal WebSocket
protocol (:class:`RawClient`), so the load generator is not what saturates the machine. Writes
bench/results/stream.md.

    python bench/bench_stream.py [--quick | --full] [--seconds S]
    python bench/bench_stream.py --clients 1000 [--per_task K] [--replicas R] [--ws IMPL] [--deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from array import array
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "api"))

RATE = 5.0  # events per second per task
CLIENTS_PER_WORKER = 2_500
SANSIO = "websockets-sansio"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- worker processes
class RawClient(asyncio.Protocol):
    """A minimal WebSocket client, so the load generator is not what saturates the machine: the
    handshake, then frames parsed in ``data_received`` (no task, no JSON): of an event only ``seq`` and
    the publisher's timestamp ``data.t`` are read, by byte search. Answers pings; inflates
    permessage-deflate frames when the server negotiated it."""

    def __init__(self, host: str, path: str, deflate: bool, latencies: array[float] | None) -> None:
        self.host, self.path, self.offer_deflate = host, path, deflate
        self.latencies = latencies
        """Where receive - publish times go; None for idle clients."""
        self.seqs: list[int] = []
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.inflater: Any = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the first message (the snapshot) has arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.offer_deflate else ""
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extension}\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the snapshot: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            if not head.startswith(b"http/1.1 101"):
                self.ready.set_exception(ConnectionError(head[:200].decode(errors="replace")))
                return
            self.handshaken = True
            if b"permessage-deflate" in head:
                self.inflater = zlib.decompressobj(-15)
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, length = buffer[pos], buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
            if start + length > size:
                break
            payload = bytes(buffer[start : start + length])
            pos = start + length
            if first & 0x40 and self.inflater is not None:
                payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
            self.frame(first & 0x0F, payload)
        if pos:
            del buffer[:pos]

    def frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x1:
            if not self.ready.done():
                self.ready.set_result(None)
            elif self.latencies is not None and payload.startswith(b'{"type":"event"'):
                now = time.time()
                at = payload.rindex(b'"t":') + 4
                self.latencies.append(now - float(payload[at : payload.index(b"}", at)]))
                at = payload.index(b'"seq":') + 6
                self.seqs.append(int(payload[at : payload.index(b",", at)]))
        elif opcode == 0x9:  # ping: answer with a masked pong, or the server closes the connection
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
        elif opcode == 0x8:
            self.transport.close()


async def clients_worker(args: argparse.Namespace) -> None:
    """Open clients (client i subscribes to task i // per_task), print "ready", collect events until
    told to stop (stdin closes), report JSON."""
    urls: list[str] = json.loads(args.urls)
    latencies = array("d")
    loop = asyncio.get_running_loop()
    clients: list[RawClient] = []

    async def connect(index: int) -> None:
        host, port = urls[index % len(urls)].removeprefix("ws://").rsplit(":", 1)
        path = f"/api/ws/tasks/{args.namespace}/t{index // args.per_task}"
        client = RawClient(f"{host}:{port}", path, args.deflate, None if args.idle else latencies)
        await loop.create_connection(lambda: client, host, int(port))
        await asyncio.wait_for(client.ready, 60)
        clients.append(client)

    for first in range(args.first, args.first + args.count, 100):
        # A hundred at a time: do not stampede the accept queue.
        await asyncio.gather(*(connect(i) for i in range(first, min(first + 100, args.first + args.count))))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # publishing has ended
    # Drain: stop once nothing has arrived for a second, so late events count as late, not lost.
    while True:
        before = len(latencies)
        await asyncio.sleep(1.0)
        if len(latencies) == before:
            break
    lost = 0
    for client in clients:
        if client.seqs:
            lost += (max(client.seqs) - min(client.seqs) + 1) - len(set(client.seqs))
    path = Path(tempfile.mkstemp(prefix="bench-lat-")[1])
    await asyncio.to_thread(path.write_bytes, latencies.tobytes())
    print(
        json.dumps(
            {
                "latencies": str(path),
                "received": len(latencies),
                "lost": lost,
                "clients_seen": sum(1 for c in clients if c.seqs),
            }
        ),
        flush=True,
    )
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


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
    redis_url: str,
    clients: int,
    replicas: int,
    seconds: float,
    deflate: bool = False,
    per_task: int = 1,
    ws: str = "websockets-sansio",
) -> dict[str, Any]:
    """``per_task`` clients subscribe to each task (clients / per_task tasks get RATE events/s each);
    ``ws`` is the uvicorn WebSocket implementation (AUTOTUNER_WS_IMPLEMENTATION)."""
    from api_support import start_api, unique

    stream = unique("bench:events")
    namespace = unique("bench")  # the per-task seq marks are global in Redis: fresh task names per run
    env = {
        "AUTOTUNER_WS_PER_MESSAGE_DEFLATE": "true" if deflate else "false",
        "LOG_LEVEL": "warning",
        "AUTOTUNER_LOG_LEVEL": "warning",
        "AUTOTUNER_HEARTBEAT_SECONDS": "30",
        "AUTOTUNER_WS_IMPLEMENTATION": ws,
    }
    apis = [start_api(redis_url, stream_key=stream, env=env) for _ in range(replicas)]
    workers = []
    try:
        urls = json.dumps([a.ws for a in apis])
        for first in range(0, clients, CLIENTS_PER_WORKER):
            count = min(CLIENTS_PER_WORKER, clients - first)
            workers.append(
                spawn(
                    "clients",
                    urls=urls,
                    first=first,
                    count=count,
                    per_task=per_task,
                    deflate=deflate,
                    namespace=namespace,
                )
            )
        for worker in workers:
            assert wait_line(worker, 120) == "ready"
        cpu0 = [cpu_seconds(a.process.pid) for a in apis]
        gen0 = sum(cpu_seconds(w.pid) for w in workers)
        began = time.monotonic()
        publisher = spawn(
            "publish",
            redis=redis_url,
            stream=stream,
            count=clients // per_task,
            seconds=seconds,
            namespace=namespace,
        )
        published = json.loads(wait_line(publisher, seconds + 60))["published"]
        generator_cpu = cpu_seconds(publisher.pid)
        publisher.wait()
        latencies: list[float] = []
        received = lost = 0
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()  # each drains until nothing arrives for a second, then reports
        for worker in workers:
            report = json.loads(wait_line(worker, 120))
            generator_cpu += cpu_seconds(worker.pid)
            worker.wait()
            path = Path(report["latencies"])
            values = array("d")
            values.frombytes(path.read_bytes())
            path.unlink()
            latencies += values.tolist()
            received += report["received"]
            lost += report["lost"]
        # Until the last delivery (minus the drain's quiet second): a backlog is part of the cost.
        elapsed = time.monotonic() - began - 1.0
        cpu = sum(cpu_seconds(a.process.pid) for a in apis) - sum(cpu0)
        generator_cpu -= gen0
        expected = published * per_task
        return {
            "clients": clients,
            "tasks": clients // per_task,
            "replicas": replicas,
            "deflate": deflate,
            "ws": ws,
            "published": published,
            "received": received,
            "expected": expected,
            "lost": lost + max(0, expected - received),
            "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies) * 1000 if latencies else float("nan"),
            "rate": received / elapsed,
            "cpu": cpu / elapsed,
            "us_per_delivery": cpu / max(1, received) * 1e6,
            "generator_cpu": generator_cpu / elapsed,
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
    parser.add_argument(
        "--full", action="store_true", help="also 10,000 clients and the legacy ws implementation"
    )
    parser.add_argument("--seconds", type=float, default=None, help="publishing time per scenario")
    parser.add_argument("--worker", choices=["clients", "publish", "poll"], help=argparse.SUPPRESS)
    for name in ("urls", "redis", "stream", "namespace"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("first", "count"):
        parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=0, help="run only this one scenario")
    parser.add_argument("--replicas", type=int, default=1, help="with --clients: api processes")
    parser.add_argument("--per_task", type=int, default=1, help="with --clients: clients per task")
    parser.add_argument("--ws", default=SANSIO, help="with --clients: uvicorn ws implementation")
    parser.add_argument("--deflate", action="store_true", help="with --clients: permessage-deflate")
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

    # 10,000 clients need more descriptors than the usual soft limit; the api processes inherit it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    redis = RedisServer().start()
    rows: list[dict[str, Any]] = []
    try:
        # (clients, replicas, deflate, clients per task, uvicorn ws implementation)
        scenarios: list[tuple[int, int, bool, int, str]]
        if args.clients:
            scenarios = [(args.clients, args.replicas, args.deflate, args.per_task, args.ws)]
        elif args.quick:
            scenarios = [(100, 1, False, 1, SANSIO)]
        else:
            scenarios = [
                (100, 1, False, 1, SANSIO),
                (1000, 1, False, 1, SANSIO),
                (1000, 2, False, 1, SANSIO),
                (1000, 1, True, 1, SANSIO),
            ]
            if args.full:  # about two more minutes: 10,000 connections take a while to open and close
                scenarios += [
                    (1000, 1, False, 1, "websockets"),
                    (10_000, 1, False, 10, SANSIO),
                    (10_000, 2, False, 10, SANSIO),
                ]
        for clients, replicas, deflate, per_task, ws in scenarios:
            rows.append(run_stream(redis.url, clients, replicas, seconds, deflate, per_task, ws))
            print(rows[-1], file=sys.stderr, flush=True)
        if args.clients:
            return
        idle_n = 200 if args.quick else 1000
        rss = {deflate: run_idle_rss(redis.url, idle_n, deflate) for deflate in (False, True)}
        polling = run_polling(redis.url, 100 if args.quick else 1000, 6.0 if args.quick else 10.0)
    finally:
        redis.stop()

    lines = [
        "# Event streaming bench (bench/bench_stream.py)",
        "",
        f"Machine: {os.cpu_count()} CPUs, shared with the load generator (publisher and client processes). "
        f"Every task gets {RATE:g} events/s for {seconds:g} s; each client subscribes to one task "
        "(`clients/task` of them to the same one). Latency = client receive time - publisher's timestamp "
        "taken just before XADD (same clock). `delivered/s` and the CPU columns count from the first publish "
        "to the last delivery (a backlog drained after publishing stopped included); "
        "`CPU/delivery` = api process CPU time / events delivered; "
        "`load gen CPU` = publisher + client processes (cores). "
        f"uvloop/httptools in use: {'yes' if _has('uvloop') and _has('httptools') else 'no'}.",
        "",
        "| clients | clients/task | replicas | uvicorn ws | deflate | published | delivered/s | lost "
        "| p50 ms | p99 ms | max ms | api CPU (cores) | CPU/delivery µs | load gen CPU |",
        "|---:|---:|---:|:---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']:,} | {r['clients'] // r['tasks']} | {r['replicas']} | {r['ws']} | "
            f"{'on' if r['deflate'] else 'off'} | {r['published']:,} | {r['rate']:,.0f} | {r['lost']} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['cpu']:.2f} | {r['us_per_delivery']:.0f} | "
            f"{r['generator_cpu']:.2f} |"
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
