"""The simulated engine: continuous batching over a step-time table, in simulated time.

Each iteration the scheduler builds a batch (below), the step's duration comes from the
:class:`~autotuner.sim.perf.StepTimeTable`, the loop sleeps ``duration * time_scale`` (wall-clock
deadlines, so Python's own overhead is absorbed rather than added), then every request in the
batch advances: prefill chunks fill the KV cache, the chunk that completes a prompt yields the
first token, each decoding request yields one token.

Scheduling, per runtime:

- SGLang (default): prefill first. When prompts are waiting and can be admitted, the step is a
  prefill batch of up to ``chunked_prefill_size`` tokens (``-1``: whole prompts up to
  ``max_prefill_tokens``) and decoding requests wait; otherwise all running requests decode.
  ``--enable-mixed-chunk`` mixes prefill chunks into decode steps as vLLM does.
- vLLM: every step runs all decoding requests plus prefill tokens up to ``max_num_batched_tokens``
  in total; with chunked prefill off, prompts are only scheduled whole.

A request is admitted only when the running batch is below ``max_running_requests`` and the KV
cache can hold its whole prompt. Each decode token takes one more KV slot; when none is free the
most recently admitted request is preempted (its KV is dropped and it is recomputed later, as
vLLM's recompute mode does) and counted. Requests that could never fit are rejected on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import count

from autotuner.sim.config import SimConfig
from autotuner.sim.gpus import get_gpu
from autotuner.sim.memory import MemoryPlan
from autotuner.sim.perf import StepTimeTable

log = logging.getLogger(__name__)

MAX_LAG_S = 0.05
"""How far the loop may fall behind its wall-clock schedule before it stops trying to catch up
(so a CPU hiccup does not turn into a burst of instant steps)."""


class RequestRejected(ValueError):
    """A request the engine refuses on arrival; the message is for the client (HTTP 400)."""


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"


_ids = count()


@dataclass(eq=False)
class SimRequest:
    """One generation request as the engine sees it. Times are simulated seconds."""

    prompt_tokens: int
    max_tokens: int
    on_update: Callable[[SimRequest], None]
    """Called after every change a client sees: new tokens, finish, failure."""
    id: int = field(default_factory=lambda: next(_ids))
    status: Status = Status.WAITING
    generated: int = 0
    computed: int = 0
    """Tokens of the current prefill target already in the KV cache."""
    target: int = 0
    """Tokens to prefill before decoding: the prompt, plus outputs after a preemption."""
    kv_tokens: int = 0
    """KV-cache slots held."""
    arrival: float = 0.0
    first_token: float | None = None
    finish: float | None = None
    error: str | None = None
    preemptions: int = 0

    @property
    def done(self) -> bool:
        return self.status in (Status.FINISHED, Status.ABORTED, Status.FAILED)

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


@dataclass
class Plan:
    prefills: list[tuple[SimRequest, int, int]]
    """(request, new tokens, cached prefix) chunks."""
    decodes: list[SimRequest]


@dataclass
class EngineStats:
    """Counters since start, in the units /metrics exports them."""

    requests_finished: int = 0
    requests_rejected: int = 0
    requests_failed: int = 0
    requests_aborted: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    steps: int = 0
    busy_seconds: float = 0.0
    """Simulated seconds spent running steps."""
    ttft_sum: float = 0.0
    ttft_count: int = 0
    tpot_sum: float = 0.0
    tpot_count: int = 0
    e2e_sum: float = 0.0
    e2e_count: int = 0


class Engine:
    """Continuous batching over a step-time table (see the module docstring)."""

    def __init__(
        self, config: SimConfig, table: StepTimeTable, memory: MemoryPlan, max_model_len: int
    ) -> None:
        self.config = config
        self.table = table
        self.memory = memory
        self.max_model_len = max_model_len
        self.capacity = memory.kv_capacity_tokens
        self.max_running = config.resolved_max_running()
        self.policy = config.resolved_policy()
        self.mixed = config.runtime == "vllm" or config.enable_mixed_chunk
        self.step_budget, self.chunked = self._prefill_budget()
        self.waiting: list[SimRequest] = []
        self.running: list[SimRequest] = []
        self.kv_used = 0
        self.stats = EngineStats()
        self.sim_time = 0.0
        self._rng = random.Random(config.seed)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _prefill_budget(self) -> tuple[int, bool]:
        """(token budget per step, whether prompts may be split across steps)."""
        c = self.config
        if c.runtime == "vllm":
            budget = c.max_num_batched_tokens or 8192
            chunked = c.enable_chunked_prefill is not False
            return (budget if chunked else max(budget, self.max_model_len)), chunked
        if c.chunked_prefill_size == -1:
            return c.max_prefill_tokens, False
        if c.chunked_prefill_size is not None:
            return c.chunked_prefill_size, True
        memory_gb = get_gpu(c.gpu).memory_bytes / 1e9
        # SGLang picks its default chunk from the GPU's memory.
        return (4096 if memory_gb < 60 else 8192 if memory_gb < 160 else 16384), True

    # -- requests -------------------------------------------------------------------------------

    def submit(
        self, prompt_tokens: int, max_tokens: int, on_update: Callable[[SimRequest], None]
    ) -> SimRequest:
        """Queue a request, or raise :class:`RequestRejected` when it can never be served."""
        total = prompt_tokens + max_tokens
        if prompt_tokens < 1:
            self.stats.requests_rejected += 1
            raise RequestRejected("the prompt must contain at least one token")
        if total > self.max_model_len:
            self.stats.requests_rejected += 1
            raise RequestRejected(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you "
                f"requested {total} tokens ({prompt_tokens} in the prompt, {max_tokens} in the completion). "
                "Please reduce the length of the prompt or completion."
            )
        if total > self.capacity:
            self.stats.requests_rejected += 1
            raise RequestRejected(
                f"The request needs {total} tokens of KV cache ({prompt_tokens} prompt + {max_tokens} "
                f"completion) but the whole KV cache holds {self.capacity} tokens; increase the memory "
                "fraction or tensor parallelism, or shorten the request."
            )
        req = SimRequest(prompt_tokens, max_tokens, on_update, target=prompt_tokens, arrival=self.now())
        self.waiting.append(req)
        self._wakeup.set()
        return req

    def abort(self, req: SimRequest) -> None:
        """Drop a request whose client went away, freeing its KV cache."""
        if req.done:
            return
        if req in self.waiting:
            self.waiting.remove(req)
        if req in self.running:
            self.running.remove(req)
            self.kv_used -= req.kv_tokens
            req.kv_tokens = 0
        req.status = Status.ABORTED
        self.stats.requests_aborted += 1

    def now(self) -> float:
        return self.sim_time

    # -- scheduling -----------------------------------------------------------------------------

    def _pick_waiting(self) -> SimRequest:
        # Without a prefix cache the tree-based policies (lpm, dfs-weight) have nothing to match on
        # and keep arrival order, as SGLang's do when no prefix matches.
        index = self._rng.randrange(len(self.waiting)) if self.policy == "random" else 0
        return self.waiting[index]

    def _preempt(self, req: SimRequest) -> None:
        self.running.remove(req)
        self.kv_used -= req.kv_tokens
        req.kv_tokens = 0
        req.computed = 0
        req.target = req.prompt_tokens + req.generated
        req.status = Status.WAITING
        req.preemptions += 1
        self.stats.preemptions += 1
        self.waiting.insert(0, req)

    def _fail(self, req: SimRequest, message: str) -> None:
        if req in self.running:
            self.running.remove(req)
        if req in self.waiting:
            self.waiting.remove(req)
        self.kv_used -= req.kv_tokens
        req.kv_tokens = 0
        req.status = Status.FAILED
        req.error = message
        req.finish = self.sim_time
        self.stats.requests_failed += 1
        req.on_update(req)

    def _reserve_decodes(self) -> list[SimRequest]:
        """The decoding requests of this step, each with one new KV slot; preempts when full."""
        while True:
            decodes = [r for r in self.running if not r.prefilling]
            if self.kv_used + len(decodes) <= self.capacity:
                break
            victims = [r for r in self.running if r is not decodes[0]] if decodes else []
            if not victims:
                self._fail(decodes[0], "the KV cache is too small for this request")
                continue
            self._preempt(victims[-1])
        for r in decodes:
            r.kv_tokens += 1
        self.kv_used += len(decodes)
        return decodes

    def _fill_prefills(self, budget: int, any_scheduled: bool) -> list[tuple[SimRequest, int, int]]:
        chunks: list[tuple[SimRequest, int, int]] = []
        for r in self.running:
            if budget <= 0:
                return chunks
            if r.prefilling:
                n = min(r.target - r.computed, budget)
                chunks.append((r, n, r.computed))
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_running:
            r = self._pick_waiting()
            if self.kv_used + r.target > self.capacity:
                break
            if not self.chunked and r.target > budget and (chunks or any_scheduled):
                break
            self.waiting.remove(r)
            r.status = Status.RUNNING
            r.kv_tokens = r.target
            self.kv_used += r.target
            self.running.append(r)
            n = r.target if not self.chunked else min(r.target, budget)
            chunks.append((r, n, 0))
            budget -= n
        return chunks

    def schedule(self) -> Plan:
        """The next step's batch; it may be empty when nothing can run."""
        if self.mixed:
            decodes = self._reserve_decodes()
            prefills = self._fill_prefills(self.step_budget - len(decodes), bool(decodes))
            return Plan(prefills, decodes)
        prefills = self._fill_prefills(self.step_budget, False)
        if prefills:
            return Plan(prefills, [])
        return Plan([], self._reserve_decodes())

    def step_seconds(self, plan: Plan) -> float:
        decode_len = sum(r.kv_tokens for r in plan.decodes) / len(plan.decodes) if plan.decodes else 0.0
        return self.table.step_seconds([(n, p) for _, n, p in plan.prefills], len(plan.decodes), decode_len)

    def complete(self, plan: Plan, duration: float) -> None:
        """Advance the clock by ``duration`` and every request in ``plan`` by one step."""
        self.sim_time += duration
        self.stats.busy_seconds += duration
        self.stats.steps += 1
        for r, n, _ in plan.prefills:
            if r.status is not Status.RUNNING:
                continue
            r.computed += n
            if not r.prefilling:
                if r.generated == 0:
                    self.stats.prompt_tokens += r.prompt_tokens
                self._emit(r)
        for r in plan.decodes:
            if r.status is Status.RUNNING:
                r.computed += 1
                r.target += 1
                self._emit(r)

    def _emit(self, r: SimRequest) -> None:
        r.generated += 1
        self.stats.generation_tokens += 1
        if r.first_token is None:
            r.first_token = self.sim_time
            self.stats.ttft_sum += r.first_token - r.arrival
            self.stats.ttft_count += 1
        if r.generated >= r.max_tokens:
            r.status = Status.FINISHED
            r.finish = self.sim_time
            self.running.remove(r)
            self.kv_used -= r.kv_tokens
            r.kv_tokens = 0
            s = self.stats
            s.requests_finished += 1
            s.e2e_sum += r.finish - r.arrival
            s.e2e_count += 1
            if r.generated > 1:
                s.tpot_sum += (r.finish - r.first_token) / (r.generated - 1)
                s.tpot_count += 1
        r.on_update(r)

    def _unschedulable(self) -> None:
        """Nothing can run although requests wait: the head one cannot fit even in an empty cache."""
        if not self.running and self.waiting:
            self._fail(self.waiting[0], "the KV cache is too small for this request")

    # -- running --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def run_virtual(self, max_steps: int = 10_000_000) -> None:
        """Run steps back to back in simulated time until idle (callbacks may submit more)."""
        for _ in range(max_steps):
            if not self.busy:
                return
            plan = self.schedule()
            if not plan.prefills and not plan.decodes:
                self._unschedulable()
                continue
            self.complete(plan, self.step_seconds(plan))
        raise RuntimeError(f"engine still busy after {max_steps} steps")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        scale = self.config.time_scale
        deadline = loop.time()
        idle_since: float | None = None
        while True:
            if not self.busy:
                idle_since = loop.time()
                self._wakeup.clear()
                await self._wakeup.wait()
                now = loop.time()
                if scale > 0:
                    # Time passes while idle too, so arrival times stay comparable.
                    self.sim_time += (now - idle_since) / scale
                    for r in self.waiting:
                        r.arrival = self.sim_time
                deadline = now
                continue
            plan = self.schedule()
            if not plan.prefills and not plan.decodes:
                self._unschedulable()
                await asyncio.sleep(0)
                continue
            duration = self.step_seconds(plan)
            now = loop.time()
            deadline = max(deadline, now - MAX_LAG_S) + duration * scale
            await asyncio.sleep(max(deadline - now, 0.0))
            self.complete(plan, duration)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sim-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for r in [*self.running, *self.waiting]:
            self._fail(r, "the server is shutting down")
