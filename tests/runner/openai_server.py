"""A small OpenAI-compatible streaming server for the runner's tests and bench, with failure knobs.

A raw asyncio HTTP/1.1 server (keep-alive, chunked SSE) on 127.0.0.1, run in its own thread so that
tests can drive it from synchronous code and subprocesses alike. It serves requests in parallel, and
each behaves as :class:`Behaviour` says: token delays, HTTP 500s, a stream cut mid-way, a stall
forever, malformed SSE. It answers ``/v1/completions`` and ``/v1/chat/completions`` with exactly
``max_tokens`` chunks of one token each (a prompt's tokens are its whitespace-separated words).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["ok", "http500", "cut", "truncated", "stall", "stall_mid", "malformed", "no_done"]


@dataclass
class Behaviour:
    mode: Mode = "ok"
    first_token_delay: float = 0.0
    """Seconds from the request to the first token."""
    token_delay: float = 0.0
    """Seconds between tokens."""
    usage: bool = True
    """Send the final usage chunk when the request asks for it."""
    # ``no_done``: finish normally (finish_reason on the last chunk) but omit ``data: [DONE]``.
    cut_after: int = 2
    """Tokens sent before ``cut`` aborts the connection, ``truncated`` ends the stream cleanly (no
    finish reason, no ``[DONE]``), ``stall_mid`` stalls or ``malformed`` sends broken JSON."""


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    last_body: dict[str, Any] = field(default_factory=dict)


class OpenAIServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.stats = Stats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OpenAIServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test server did not start within 10 s")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._respond(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, method: str, path: str, raw: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection may be reused."""
        if method == "GET" and path in ("/health", "/v1/models"):
            _send(writer, 200, b'{"object":"list","data":[]}', "application/json")
            return True
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            _send(writer, 404, b'{"error":"not found"}', "application/json")
            return True
        b = self.behaviour
        body = json.loads(raw)
        st = self.stats
        st.requests += 1
        st.last_body = body
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            if b.mode == "http500":
                _send(writer, 500, b'{"error":"injected failure"}', "application/json")
                return True
            if b.mode == "stall":
                await asyncio.Event().wait()
            chat = path.endswith("/chat/completions")
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            n_out = int(body.get("max_tokens", 16))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            if b.first_token_delay:
                await asyncio.sleep(b.first_token_delay)
            for i in range(n_out):
                if i and b.token_delay:
                    await asyncio.sleep(b.token_delay)
                if b.mode == "cut" and i == b.cut_after:
                    await writer.drain()
                    writer.transport.abort()
                    return False
                if b.mode == "truncated" and i == b.cut_after:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return True
                if b.mode == "stall_mid" and i == b.cut_after:
                    await asyncio.Event().wait()
                if b.mode == "malformed" and i == b.cut_after:
                    _chunk(writer, b"data: {not json\n\n")
                    continue
                choice: dict[str, Any] = (
                    {"index": 0, "delta": {"content": " tok"}, "finish_reason": None}
                    if chat
                    else {"index": 0, "text": " tok", "finish_reason": None}
                )
                if i == n_out - 1:
                    choice["finish_reason"] = "length"
                _event(
                    writer, {"id": "x", "object": "chunk", "model": body.get("model"), "choices": [choice]}
                )
                await writer.drain()
            if b.usage and (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n_out}
                _event(writer, {"id": "x", "choices": [], "usage": usage})
            if b.mode != "no_done":
                _chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            st.in_flight -= 1


def _send(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str) -> None:
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _event(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    _chunk(writer, b"data: " + json.dumps(obj).encode() + b"\n\n")


@contextlib.contextmanager
def closed_port() -> Any:
    """A loopback port with nothing listening (connections are refused)."""
    from autotuner.devtools.ports import free_port

    yield free_port()
