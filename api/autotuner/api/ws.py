"""WebSocket streams: snapshot, then events in order; resume with ``since``; protocol in api/README.md."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from autotuner.api.auth import SUBPROTOCOL, AuthError, bearer_token, offered_subprotocols
from autotuner.api.broadcaster import (
    REDIS_DOWN,
    Item,
    ItemKind,
    StreamKind,
    Subscriber,
    Topic,
    status_message,
)
from autotuner.api.protocol import CloseCode, InvalidName, Services, check_name, check_namespace
from autotuner.core.stream import InvalidStreamId, ResumeCheck, parse_stream_id
from fastapi import APIRouter, WebSocket
from starlette.types import Message, Send

log = logging.getLogger(__name__)
router = APIRouter()


@router.websocket("/api/ws/tasks/{namespace}/{name}")
async def task_stream(websocket: WebSocket, namespace: str, name: str) -> None:
    """A task and all its experiments."""
    await serve(websocket, StreamKind.TASK, namespace, name)


@router.websocket("/api/ws/experiments/{namespace}/{name}")
async def experiment_stream(websocket: WebSocket, namespace: str, name: str) -> None:
    await serve(websocket, StreamKind.EXPERIMENT, namespace, name)


@router.websocket("/api/ws/namespaces/{namespace}")
async def namespace_stream(websocket: WebSocket, namespace: str) -> None:
    """Every task and experiment in one namespace, multiplexed on one socket."""
    await serve(websocket, StreamKind.NAMESPACE, namespace, None)


@router.websocket("/api/ws/all")
async def all_stream(websocket: WebSocket) -> None:
    """Every task and experiment the api watches (needs cluster-wide access)."""
    await serve(websocket, StreamKind.ALL, None, None)


async def unknown_stream(websocket: WebSocket) -> None:
    """Any other WebSocket path: accepted only to say 4404 clearly (a refused handshake is a bare 403)."""
    await _refuse(
        websocket, _subprotocol(websocket), CloseCode.NOT_FOUND, f"no stream at {websocket.url.path}"
    )


def _subprotocol(websocket: WebSocket) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(websocket) else None


def _reason(text: str) -> str:
    # A close reason is at most 123 bytes.
    return text.encode()[:123].decode(errors="ignore")


async def _refuse(websocket: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    services: Services = websocket.app.state.services
    services.metrics.closed.labels(str(code)).inc()
    await websocket.accept(subprotocol=subprotocol)
    await websocket.close(code, _reason(reason))


async def serve(websocket: WebSocket, kind: StreamKind, namespace: str | None, name: str | None) -> None:
    services: Services = websocket.app.state.services
    subprotocol = _subprotocol(websocket)
    since = websocket.query_params.get("since")
    try:
        if namespace is not None:
            check_namespace(namespace)
        if name is not None:
            check_name(name)
        if since is not None:
            parse_stream_id(since)
    except (InvalidName, InvalidStreamId) as error:
        await _refuse(websocket, subprotocol, CloseCode.BAD_REQUEST, str(error))
        return
    try:
        principal = await services.authenticator.authenticate(bearer_token(websocket))
        await services.authenticator.authorize(principal, namespace)
    except AuthError as error:
        await _refuse(websocket, subprotocol, error.close_code, error.message)
        return
    except Exception:
        log.exception("authorization failed")
        await _refuse(websocket, subprotocol, CloseCode.INTERNAL_ERROR, "authorization is unavailable, retry")
        return

    await websocket.accept(subprotocol=subprotocol)
    subscriber = services.broadcaster.subscribe(
        Topic(kind, namespace or "", name or ""), services.settings.queue_size
    )
    services.metrics.connections.labels(kind.value).inc()
    connection = _Connection(websocket, services, subscriber, since)
    try:
        code, reason = await connection.run()
    finally:
        services.broadcaster.unsubscribe(subscriber)
        services.metrics.connections.labels(kind.value).dec()
    if code is not None:
        services.metrics.closed.labels(str(code)).inc()
        if code == CloseCode.SLOW_CONSUMER:
            services.metrics.dropped.inc()
        try:
            async with asyncio.timeout(2.0):
                await websocket.close(code, _reason(reason))
        except Exception:  # the peer is gone or not reading: the transport is dropped on return
            pass


class _Connection:
    def __init__(self, websocket: WebSocket, services: Services, subscriber: Subscriber, since: str | None):
        self.ws = websocket
        # The ASGI send callable itself: Starlette's WebSocket.send re-checks its state machine on every
        # message, while this connection only sends after accepting and until it closes.
        self._asgi_send: Send = websocket._send
        self.services = services
        self.sub = subscriber
        self.since = since
        self.last_id: str | None = since
        """Newest stream id the client has been sent (its resume point)."""
        self._skip_until: tuple[int, int] | None = None
        m = services.metrics.messages_out
        self._sent_event, self._sent_control = m.labels("event"), m.labels("control")
        self._loop = asyncio.get_running_loop()

    async def run(self) -> tuple[int | None, str]:
        tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._receive_loop()),
            asyncio.create_task(self._watch_drop()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        first = next(iter(done))
        if first.cancelled():
            return None, ""
        error = first.exception()
        if error is not None:
            if not _is_disconnect(error):
                log.error("stream failed", exc_info=error)
                return CloseCode.INTERNAL_ERROR, "internal error, reconnect with since"
            return None, ""
        result: tuple[int | None, str] = first.result()
        return result

    def _slow_consumer(self) -> tuple[int, str]:
        hint = f"resume with since={self.last_id}" if self.last_id else "reconnect"
        return CloseCode.SLOW_CONSUMER, f"slow consumer, {hint}"

    async def _watch_drop(self) -> tuple[int | None, str]:
        await self.sub.dropped.wait()
        return self._slow_consumer()

    async def _send_message(self, message: Message) -> None:
        # The broadcaster's sweep drops the client (4008) when this blocks past the send timeout.
        # (Inside the send loop's batch the batch's own start time already stands.)
        sub = self.sub
        outer = sub.busy_since
        if outer is None:
            sub.busy_since = self._loop.time()
        await self._asgi_send(message)
        if outer is None:
            sub.busy_since = None
            sub.idle_since = self._loop.time()

    async def _send(self, text: str) -> None:
        await self._send_message({"type": "websocket.send", "text": text})

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self._send(orjson.dumps(message).decode())
        self._sent_control.inc()

    async def _snapshot(self, stream_id: str | None) -> None:
        cache, topic = self.services.cache, self.sub.topic
        message: dict[str, Any] = {
            "type": "snapshot",
            "stream": topic.kind.value,
            "streamId": stream_id,
            "live": self.services.broadcaster.live,
            "cacheReady": cache.ready,
        }
        if topic.kind is StreamKind.TASK:
            message["task"] = cache.get_task(topic.namespace, topic.name)
            message["experiments"] = cache.list_experiments(topic.namespace, topic.name)
        elif topic.kind is StreamKind.EXPERIMENT:
            message["experiment"] = cache.get_experiment(topic.namespace, topic.name)
        else:
            namespace = topic.namespace or None
            message["tasks"] = cache.list_tasks(namespace)
            message["experiments"] = cache.list_experiments(namespace)
        await self._send_json(message)
        self.last_id = stream_id
        self._skip_until = None

    async def _resync(self, reason: str, stream_id: str | None) -> None:
        self.services.metrics.resyncs.labels(reason).inc()
        await self._send_json({"type": "resync", "reason": reason})
        await self._snapshot(stream_id)

    async def _start(self) -> None:
        """Snapshot (or history after ``since``) up to the subscription's start position; the queue holds
        everything after it, so nothing is missed and nothing sent twice."""
        start = self.sub.start_id
        live = self.sub.live_at_start
        if self.since is None:
            await self._snapshot(start)
        elif not live or start is None:
            await self._resync("redis_unavailable", start)
        else:
            try:
                await self._replay(self.since, start)
            except REDIS_DOWN:
                self.services.metrics.redis_errors.labels("history").inc()
                await self._resync("redis_unavailable", start)
        if not live:
            await self._send(status_message(False, "redis_unavailable"))
            self._sent_control.inc()

    async def _replay(self, since: str, until: str) -> None:
        reader = self.services.reader
        check = await reader.check_resume(since)
        if check is not ResumeCheck.OK:
            await self._resync(f"since_{check.value}", until)
            return
        await self._send_json({"type": "resumed", "since": since, "streamId": until})
        after, end = since, parse_stream_id(until)
        while parse_stream_id(after) < end:
            entries = await reader.history(after, until)
            if not entries:
                break
            for entry in entries:
                if self.sub.topic.matches(entry):
                    await self._send(entry.event_message())
                    self._sent_event.inc()
                    self.last_id = entry.id
            after = entries[-1].id
        # Nothing for this topic lies between the last replayed entry and ``until``. When the client's
        # id is ahead of this replica's position (it came from a faster replica), queued entries up to
        # it are skipped instead of being sent twice.
        ahead = parse_stream_id(since) > end
        self.last_id = since if ahead else until
        self._skip_until = parse_stream_id(since) if ahead else None

    async def _send_loop(self) -> tuple[int | None, str]:
        await self._start()
        lag, sub, loop, send = self.services.metrics.lag, self.sub, self._loop, self._asgi_send
        while True:
            batch = await sub.take()
            if sub.dropped.is_set():
                return self._slow_consumer()
            events = 0
            sub.busy_since = loop.time()
            for item in batch:
                if item.kind is ItemKind.EVENT:
                    assert item.stream_id is not None
                    if self._skip_until is not None:
                        if parse_stream_id(item.stream_id) <= self._skip_until:
                            continue
                        self._skip_until = None
                    await send(item.message)
                    self.last_id = item.stream_id
                    events += 1
                elif item.kind is ItemKind.RESYNC:
                    await self._resync(item.text, item.stream_id)
                else:
                    await send(item.message)
                    self._sent_control.inc()
            sub.busy_since = None
            sub.idle_since = loop.time()
            if events:
                self._sent_event.inc(events)
                if self.last_id is not None:
                    sent_ms = int(self.last_id.partition("-")[0])
                    lag.observe(max(0.0, time.time() - sent_ms / 1000))

    async def _receive_loop(self) -> tuple[int | None, str]:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return None, ""
            text = message.get("text")
            reply: dict[str, Any]
            if text is None:
                reply = {"type": "error", "code": "bad_message", "message": "send JSON text frames"}
            else:
                try:
                    data = orjson.loads(text)
                except orjson.JSONDecodeError:
                    data = None
                if isinstance(data, dict) and data.get("type") == "ping":
                    reply = {"type": "pong"}
                elif data is None:
                    reply = {"type": "error", "code": "bad_message", "message": "not valid JSON"}
                else:
                    reply = {
                        "type": "error",
                        "code": "bad_message",
                        "message": 'unknown message; the only client message is {"type":"ping"}',
                    }
            self.sub.offer(Item(ItemKind.CONTROL, None, orjson.dumps(reply).decode()))


def _is_disconnect(error: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect

    if isinstance(error, WebSocketDisconnect | OSError):
        return True
    # Sending after the peer closed: uvicorn/starlette raise RuntimeError or websockets' ConnectionClosed.
    return isinstance(error, RuntimeError) or type(error).__name__.startswith("ConnectionClosed")
