"""The local processes the executor runs for pods: a simulator per engine pod, a runner per benchmark pod."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger("autotuner.devtools.executor")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the executor is SIGKILLed, the kernel stops its
    # simulators and runners too, so no process outlives the executor that owns it.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn(argv: Sequence[str], log_file: Path) -> asyncio.subprocess.Process:
    """Starts ``argv`` with stdout piped (for the ``listening on`` line) and stderr piped (for its tail)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


async def stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def exit_code(returncode: int) -> int:
    """A container exit code: a process killed by signal N exits 128+N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class OutputCollector:
    """Copies a process's output to its log file and keeps the last lines in memory."""

    log_file: Path
    max_lines: int = 200
    lines: deque[str] = field(default_factory=deque)
    stdout_lines: deque[str] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.lines = deque(maxlen=self.max_lines)
        self.stdout_lines = deque(maxlen=self.max_lines)

    async def pump(
        self, stream: asyncio.StreamReader, *, stdout: bool, listening: asyncio.Future[str] | None = None
    ) -> None:
        with self.log_file.open("a", encoding="utf-8") as out:
            while True:
                raw = await stream.readline()
                if not raw:
                    if listening is not None and not listening.done():
                        listening.set_result("")
                    return
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(line + "\n")
                out.flush()
                self.lines.append(line)
                if stdout:
                    self.stdout_lines.append(line)
                if listening is not None and not listening.done() and line.startswith("listening on "):
                    listening.set_result(line.removeprefix("listening on ").strip())

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class ExitInfo:
    """How a local process ended, in the terms of a container's ``state.terminated``."""

    exit_code: int
    started_at: str
    finished_at: str
    output: str


def rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


async def wait_healthy(url: str, process: asyncio.subprocess.Process, *, interval: float = 0.1) -> bool:
    """Probes ``url``/health until it answers 200 (True) or the process exits (False)."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url.rstrip("/") + "/health") as response:
                    if response.status == 200:
                        return True
            # A readiness probe's period: back off to one probe a second for a slow start.
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 1.0)
    return False
