"""The executor: watches local-exec pods on a KWOK cluster and runs their commands on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from autotuner.devtools.executor import commands, processes
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("autotuner.devtools.executor")

# The contract with the operator (labels and test-hook annotation it puts on pods) and with the KWOK
# Stages in hack/cluster/stages/local-exec-*.yaml (the exec-* annotations they copy into pod status).
LOCAL_EXEC_LABEL = "autotuner.io/local-exec"
ROLE_LABEL = "autotuner.io/role"
FAULT_ANNOTATION = "autotuner.io/sim-fault"
FAULTS = frozenset({"never-ready", "crash", "oom", "image-pull"})
STATE = "autotuner.io/exec-state"
EXIT_CODE = "autotuner.io/exec-exit-code"
REASON = "autotuner.io/exec-reason"
MESSAGE = "autotuner.io/exec-message"
RESTART_COUNT = "autotuner.io/exec-restart-count"
STARTED_AT = "autotuner.io/exec-started-at"
FINISHED_AT = "autotuner.io/exec-finished-at"
URL = "autotuner.io/exec-url"
LOG = "autotuner.io/exec-log"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def _console_script(name: str) -> tuple[str, ...]:
    """The project's console script beside this interpreter (a venv need not be on PATH), else PATH's."""
    beside = Path(sys.executable).parent / name
    return (str(beside),) if beside.exists() else (name,)


class NotAKwokClusterError(RuntimeError):
    """The cluster has a node with a real kubelet: the executor refuses to run anything."""


@dataclass(frozen=True)
class ExecutorOptions:
    """Tunables of the local executor (each is also a command-line flag)."""

    time_scale: float = 0.02
    """``--time-scale`` for simulators whose pod does not set one (0.02: fifty times faster than real)."""
    max_engines: int = 8
    """Simulators running at once; further engine pods stay not ready until one stops."""
    max_benchmarks: int = 2
    """Runners running at once; further benchmark pods stay Running until a slot frees."""
    endpoint_timeout: float = 60.0
    """Seconds a benchmark waits for a ready local engine behind its Service before running anyway
    (against a refused port, so the runner reports the failure a Service without endpoints gives)."""
    benchmark_timeout: float = 1800.0
    """Seconds after which a runner is killed and its pod failed."""
    resync_seconds: int = 60
    """Each watch ends after this long and the pods are listed again, so a missed event heals."""
    sim_command: tuple[str, ...] = field(default_factory=lambda: _console_script("autotuner-sim"))
    """How to start the simulator on this machine."""
    runner_command: tuple[str, ...] = field(default_factory=lambda: _console_script("autotuner-runner"))
    """How to start the benchmark runner on this machine."""
    log_dir: Path | None = None
    """Where each local process's output goes (``<namespace>/<pod>.log``); a temporary folder if unset."""


@dataclass
class _Engine:
    namespace: str
    name: str
    labels: dict[str, str]
    url: str | None = None


@dataclass
class _Pod:
    """The parts of a pod the executor reads (a raw API dict, typed at the edge)."""

    raw: dict[str, Any] = field(repr=False)

    @property
    def uid(self) -> str:
        return str(self.raw["metadata"]["uid"])

    @property
    def name(self) -> str:
        return str(self.raw["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.raw["metadata"]["namespace"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.raw["metadata"].get("labels") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.raw["metadata"].get("annotations") or {})

    @property
    def deleting(self) -> bool:
        return bool(self.raw["metadata"].get("deletionTimestamp"))

    @property
    def phase(self) -> str:
        return str((self.raw.get("status") or {}).get("phase") or "")

    @property
    def node(self) -> str:
        return str((self.raw.get("spec") or {}).get("nodeName") or "")

    @property
    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.raw["spec"]["containers"]
        return containers[0]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class LocalExecutor:
    """Runs the commands of ``autotuner.io/local-exec=true`` pods on this machine (KWOK clusters only).

    Use as an async context manager: entering checks that every node is a KWOK node (else
    :class:`NotAKwokClusterError`), lists the pods and starts watching them; leaving stops every
    local process. ``namespace`` limits it to one namespace (all namespaces when None). Run one
    executor per set of namespaces: two executors watching the same pod would both run it.
    """

    def __init__(
        self, kubeconfig: str | Path, *, namespace: str | None = None, options: ExecutorOptions | None = None
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.options = options or ExecutorOptions()
        self._api: client.ApiClient | None = None
        self._core: Any = None
        self._nodes: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        self._warned: set[str] = set()
        self._engines: dict[str, _Engine] = {}
        self._engines_changed = asyncio.Condition()
        self._engine_slots = asyncio.Semaphore(self.options.max_engines)
        self._benchmark_slots = asyncio.Semaphore(self.options.max_benchmarks)
        self._watcher: asyncio.Task[None] | None = None
        self._own_log_dir = self.options.log_dir is None
        self.log_dir = self.options.log_dir or Path(tempfile.mkdtemp(prefix="autotuner-exec-"))

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> LocalExecutor:
        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._api)
        try:
            await self.check_cluster()
            resource_version = await self._list_and_observe()
        except BaseException:
            await self._api.close()
            raise
        self._watcher = asyncio.create_task(self._watch_forever(resource_version), name="executor-watch")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = [t for t in [self._watcher, *self._tasks.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.close()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def wait(self) -> None:
        """Runs until cancelled (the command-line entry point's main loop)."""
        assert self._watcher is not None, "use `async with LocalExecutor(...)` first"
        await self._watcher

    @property
    def engines(self) -> dict[tuple[str, str], str | None]:
        """Engine pods with a local simulator: (namespace, pod) -> its URL once it answers /health."""
        return {(e.namespace, e.name): e.url for e in self._engines.values()}

    # -- safety --------------------------------------------------------------------------------

    async def check_cluster(self) -> None:
        """Raises :class:`NotAKwokClusterError` unless every node is a KWOK (fake) node."""
        nodes = self._sanitize(await self._core.list_node())["items"]
        real = [n["metadata"]["name"] for n in nodes if not self._is_kwok(n)]
        if real:
            raise NotAKwokClusterError(
                f"refusing to run: node(s) {', '.join(sorted(real))} lack the annotation "
                f"{KWOK_NODE_ANNOTATION}=fake. The local executor runs pod commands on THIS machine "
                "and must only ever be pointed at a KWOK cluster, never at one with real kubelets."
            )
        self._nodes = {n["metadata"]["name"]: n for n in nodes}

    @staticmethod
    def _is_kwok(node: dict[str, Any]) -> bool:
        annotations = node["metadata"].get("annotations") or {}
        return bool(annotations.get(KWOK_NODE_ANNOTATION) == "fake")

    async def _kwok_node(self, name: str) -> dict[str, Any] | None:
        """The pod's node if it is a KWOK node; a node that joined later is checked too."""
        if name not in self._nodes:
            try:
                self._nodes[name] = self._sanitize(await self._core.read_node(name))
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        node = self._nodes[name]
        return node if self._is_kwok(node) else None

    # -- watching ------------------------------------------------------------------------------

    def _sanitize(self, obj: Any) -> dict[str, Any]:
        assert self._api is not None
        data: dict[str, Any] = self._api.sanitize_for_serialization(obj)
        return data

    def _list_call(self) -> tuple[Any, tuple[str, ...]]:
        if self.namespace:
            return self._core.list_namespaced_pod, (self.namespace,)
        return self._core.list_pod_for_all_namespaces, ()

    async def _list_and_observe(self) -> str:
        func, args = self._list_call()
        pods = self._sanitize(await func(*args, label_selector=f"{LOCAL_EXEC_LABEL}=true"))
        alive = set()
        for raw in pods["items"]:
            pod = _Pod(raw)
            alive.add(pod.uid)
            self._observe(pod, deleted=False)
        for uid in set(self._tasks) - alive:
            self._tasks[uid].cancel()
        return str(pods["metadata"]["resourceVersion"])

    async def _watch_forever(self, resource_version: str) -> None:
        backoff = 0.5
        while True:
            try:
                func, args = self._list_call()
                async with watch.Watch().stream(
                    func,
                    *args,
                    label_selector=f"{LOCAL_EXEC_LABEL}=true",
                    resource_version=resource_version,
                    timeout_seconds=self.options.resync_seconds,
                    allow_watch_bookmarks=True,
                ) as stream:
                    async for event in stream:
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._observe(_Pod(event["raw_object"]), deleted=event["type"] == "DELETED")
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The API server restarting, a 410 Gone... relist below and carry on.
                log.warning("pod watch ended (%s); listing again in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            try:
                resource_version = await self._list_and_observe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listing pods failed: %s", exc)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _observe(self, pod: _Pod, *, deleted: bool) -> None:
        """Level-based: decides from the pod as it is now whether a local process should run for it."""
        uid = pod.uid
        if deleted or pod.deleting:
            task = self._tasks.get(uid)
            if task is not None:
                log.info("%s deleted: stopping its local process", pod)
                task.cancel()
            return
        if uid in self._tasks or uid in self._finished or pod.phase != "Running":
            return
        fault = pod.annotations.get(FAULT_ANNOTATION)
        if fault in FAULTS:
            # The local-exec Stages play these faults; running anything would only waste CPU.
            self._warn_once(uid, "%s has test hook %s=%s: not running it", pod, FAULT_ANNOTATION, fault)
            return
        if fault:
            self._warn_once(uid, "%s: unknown %s=%r ignored", pod, FAULT_ANNOTATION, fault)
        role = pod.labels.get(ROLE_LABEL)
        state = pod.annotations.get(STATE)
        if role == "engine" and state != "crashed":
            runner = self._run_engine(pod)
        elif role == "benchmark" and state != "completed":
            runner = self._run_benchmark(pod)
        else:
            if role not in ("engine", "benchmark"):
                self._warn_once(
                    uid, "%s: label %s must be engine or benchmark, got %r", pod, ROLE_LABEL, role
                )
            return
        task = asyncio.create_task(runner, name=f"exec {pod}")
        self._tasks[uid] = task
        task.add_done_callback(lambda t: self._task_done(uid, str(pod), t))

    def _task_done(self, uid: str, pod: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(uid, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # Not marked finished: the next resync tries again.
            log.error("%s: local execution failed: %r", pod, exc)

    # -- pod status hand-over ------------------------------------------------------------------

    async def _annotate(self, pod: _Pod, annotations: dict[str, str]) -> None:
        try:
            await self._core.patch_namespaced_pod(
                pod.name, pod.namespace, {"metadata": {"annotations": annotations}}
            )
        except ApiException as exc:
            if exc.status != 404:  # a deleted pod needs no status
                raise

    def _log_file(self, pod: _Pod) -> Path:
        return self.log_dir / pod.namespace / f"{pod.name}.log"

    async def _checked_node(self, pod: _Pod) -> dict[str, Any] | None:
        node = await self._kwok_node(pod.node)
        if node is None:
            log.error(
                "REFUSING to run %s: its node %r is not a KWOK node (%s=fake)",
                pod,
                pod.node,
                KWOK_NODE_ANNOTATION,
            )
            self._finished.add(pod.uid)
        return node

    # -- engines -------------------------------------------------------------------------------

    async def _run_engine(self, pod: _Pod) -> None:
        node = await self._checked_node(pod)
        if node is None:
            return
        started = time.time()
        try:
            engine = commands.parse_engine(commands.container_argv(pod.container))
        except commands.UnsupportedCommandError as exc:
            await self._crashed(pod, 128, "StartError", str(exc), started)
            return
        gpu = commands.simulator_gpu((node["metadata"].get("labels") or {}).get(GPU_PRODUCT_LABEL))
        argv = commands.simulator_argv(
            engine, sim_command=self.options.sim_command, time_scale=self.options.time_scale, gpu=gpu
        )
        async with self._engine_slots:
            log_file = self._log_file(pod)
            log.info("%s: starting simulator (%s): %s", pod, engine.runtime, " ".join(argv))
            started = time.time()
            try:
                process = await processes.spawn(argv, log_file)
            except OSError as exc:
                await self._crashed(
                    pod, 128, "StartError", f"local executor: cannot start {argv[0]}: {exc}", started
                )
                return
            output = processes.OutputCollector(log_file)
            listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            assert process.stdout is not None and process.stderr is not None
            pumps = [
                asyncio.create_task(output.pump(process.stdout, stdout=True, listening=listening)),
                asyncio.create_task(output.pump(process.stderr, stdout=False)),
            ]
            entry = _Engine(pod.namespace, pod.name, pod.labels)
            self._engines[pod.uid] = entry
            try:
                url = await listening  # "" when the process closed its output without listening
                if url and await processes.wait_healthy(url, process):
                    entry.url = url
                    log.info("%s: simulator ready at %s", pod, entry.url)
                    await self._annotate(pod, {STATE: "ready", URL: entry.url, LOG: str(log_file)})
                    async with self._engines_changed:
                        self._engines_changed.notify_all()
                code = processes.exit_code(await process.wait())
                await asyncio.gather(*pumps)
                text = output.text()
                reason = (
                    "Completed"
                    if code == 0
                    else "OOMKilled"
                    if commands.looks_out_of_memory(text)
                    else "Error"
                )
                log.warning("%s: simulator exited with %d (%s)", pod, code, reason)
                await self._crashed(pod, code, reason, commands.log_tail(text), started)
            finally:
                self._engines.pop(pod.uid, None)
                await processes.stop(process)
                for pump in pumps:
                    pump.cancel()

    async def _crashed(self, pod: _Pod, code: int, reason: str, message: str, started: float) -> None:
        """What a kubelet reports for a Deployment's container that exited: CrashLoopBackOff."""
        self._finished.add(pod.uid)
        await self._annotate(
            pod,
            {
                STATE: "crashed",
                EXIT_CODE: str(code),
                REASON: reason,
                MESSAGE: commands.termination_message(message),
                RESTART_COUNT: "1",
                STARTED_AT: processes.rfc3339(started),
                FINISHED_AT: processes.rfc3339(time.time()),
            },
        )

    # -- benchmarks ----------------------------------------------------------------------------

    async def _engine_url(self, service: commands.ServiceRef | None) -> str | None:
        """The URL of a ready local engine selected by ``service``, waiting up to endpoint_timeout."""
        if service is None:
            return None
        deadline = time.monotonic() + self.options.endpoint_timeout
        selector: dict[str, str] | None = None
        while True:
            if selector is None:
                try:
                    svc = self._sanitize(
                        await self._core.read_namespaced_service(service.name, service.namespace)
                    )
                    selector = dict((svc.get("spec") or {}).get("selector") or {})
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            for engine in self._engines.values():
                if (
                    selector
                    and engine.url
                    and engine.namespace == service.namespace
                    and selector.items() <= engine.labels.items()
                ):
                    return engine.url
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            async with self._engines_changed:
                with contextlib.suppress(TimeoutError):
                    # Woken when an engine becomes ready; the cap re-reads a Service created late.
                    await asyncio.wait_for(self._engines_changed.wait(), min(remaining, 1.0))

    async def _run_benchmark(self, pod: _Pod) -> None:
        if await self._checked_node(pod) is None:
            return
        started = time.time()
        try:
            args = commands.runner_args(commands.container_argv(pod.container))
        except commands.UnsupportedCommandError as exc:
            await self._completed(pod, 128, "StartError", str(exc), started, url="")
            return
        url = commands.flag_value(args, "--url") or ""
        local = await self._engine_url(commands.service_of_url(url, pod.namespace))
        with _refused_port() as refused, tempfile.TemporaryDirectory(prefix="autotuner-bench-") as tmp:
            if local is None:
                log.warning(
                    "%s: no ready local engine behind %s; the runner will find it unreachable", pod, url
                )
                local = f"http://127.0.0.1:{refused}"
            termination_log = Path(tmp) / "termination-log"
            args = commands.with_flag(args, "--url", commands.rebase_url(url, local))
            args = commands.with_flag(args, "--termination-log", str(termination_log))
            if commands.flag_value(args, "--result-file"):
                args = commands.with_flag(args, "--result-file", str(Path(tmp) / "result.json"))
            async with self._benchmark_slots:
                argv = [*self.options.runner_command, *args]
                log.info("%s: running benchmark: %s", pod, " ".join(argv))
                log_file = self._log_file(pod)
                started = time.time()
                try:
                    process = await processes.spawn(argv, log_file)
                except OSError as exc:
                    message = f"local executor: cannot start {argv[0]}: {exc}"
                    await self._completed(pod, 128, "StartError", message, started, url=local)
                    return
                output = processes.OutputCollector(log_file)
                assert process.stdout is not None and process.stderr is not None
                pumps = asyncio.gather(
                    output.pump(process.stdout, stdout=True), output.pump(process.stderr, stdout=False)
                )
                try:
                    code = processes.exit_code(
                        await asyncio.wait_for(process.wait(), self.options.benchmark_timeout)
                    )
                    await pumps
                    message = termination_log.read_text() if termination_log.exists() else ""
                except TimeoutError:
                    code = 137
                    message = f"local executor: benchmark killed after {self.options.benchmark_timeout:.0f}s"
                finally:
                    await processes.stop(process)
                    pumps.cancel()
            policy = pod.container.get("terminationMessagePolicy")
            if not message.strip() and code != 0 and policy == "FallbackToLogsOnError":
                message = commands.log_tail(output.text())
            log.info("%s: runner exited with %d", pod, code)
            await self._completed(
                pod, code, "Completed" if code == 0 else "Error", message, started, url=local
            )

    async def _completed(
        self, pod: _Pod, code: int, reason: str, message: str, started: float, *, url: str
    ) -> None:
        self._finished.add(pod.uid)
        await self._annotate(
            pod,
            {
                STATE: "completed",
                EXIT_CODE: str(code),
                REASON: reason,
                MESSAGE: commands.termination_message(message),
                STARTED_AT: processes.rfc3339(started),
                FINISHED_AT: processes.rfc3339(time.time()),
                URL: url,
                LOG: str(self._log_file(pod)),
            },
        )


@contextlib.contextmanager
def _refused_port() -> Iterator[int]:
    """A loopback port bound but not listening while held: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
