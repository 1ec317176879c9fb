"""One long-lived asyncio worker per object, woken by watch events and polling on a timer.

Kopf daemons would do this too, but Kopf puts a finalizer on every object that has a daemon, and an
object with a finalizer cannot be deleted while the operator is down. Workers started from watch
events (``@kopf.on.event``) need no finalizer: deletion is left to the garbage collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]


class Workers:
    """Workers by key: :meth:`ensure` starts one when none runs, :meth:`wake` makes it pass again now."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._wakeups: dict[Hashable, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    def ensure(self, key: Hashable, loop: Loop) -> None:
        if key in self._tasks:
            return
        wake = self._wakeups.setdefault(key, asyncio.Event())
        task = asyncio.create_task(self._run(key, loop, wake), name=f"worker {key}")
        self._tasks[key] = task

    async def _run(self, key: Hashable, loop: Loop, wake: asyncio.Event) -> None:
        try:
            await loop(wake)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("worker %s crashed; it restarts on the next event", key)
        finally:
            self._tasks.pop(key, None)
            self._wakeups.pop(key, None)

    def wake(self, key: Hashable) -> None:
        if (event := self._wakeups.get(key)) is not None:
            event.set()

    async def stop(self, key: Hashable) -> None:
        task = self._tasks.pop(key, None)
        self._wakeups.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop_all(self) -> None:
        for key in list(self._tasks):
            await self.stop(key)


async def sleep_or_wake(wake: asyncio.Event, seconds: float | None) -> None:
    """Wait until woken or ``seconds`` pass; clears the wake-up either way."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()
