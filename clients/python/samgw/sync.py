"""A blocking wrapper of Client for scripts and threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .client import Client
from .message import Message

T = TypeVar("T")


class SyncClient:
    """Client on its own event loop in a background thread; every method
    blocks until done. Callbacks registered with on() run on that thread.

        with SyncClient("127.0.0.1", 4000, token=...) as c:
            print(c.request({"name": "John"}).payload)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 4000, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="samgw", daemon=True)
        self._thread.start()
        self._client: Client = self._call(self._make(host, port, options))

    @staticmethod
    async def _make(host: str, port: int, options: dict[str, Any]) -> Client:
        return Client(host, port, **options)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _sync(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()
        return self._call(run())

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Registers callback (run on the client's thread)."""
        return self._sync(lambda: self._client.on(event, callback))

    def connect(self) -> None:
        self._call(self._client.connect())

    def send(self, payload: Any, *, route: str | None = None) -> str:
        return self._sync(lambda: self._client.send(payload, route=route))

    def request(self, payload: Any, *, route: str | None = None, timeout: float | None = None) -> Message:
        return self._call(self._client.request(payload, route=route, timeout=timeout))

    def ping(self, timeout: float | None = None) -> float:
        return self._call(self._client.ping(timeout))

    def subscribe(self, topic: str, *, timeout: float | None = None) -> Message:
        return self._call(self._client.subscribe(topic, timeout=timeout))

    def unsubscribe(self, topic: str, *, timeout: float | None = None) -> Message:
        return self._call(self._client.unsubscribe(topic, timeout=timeout))

    def topic_offset(self, topic: str) -> tuple[int, str] | None:
        return self._sync(lambda: self._client.topic_offset(topic))

    def ack(self, seq: int) -> None:
        """Acks the mailbox messages up to seq (with manual_ack)."""
        self._sync(lambda: self._client.ack(seq))

    @property
    def mailbox(self) -> tuple[bool, int]:
        """Whether the last connection resumed its mailbox, and how many messages waited."""
        return self._sync(lambda: (self._client.resumed, self._client.pending))

    def is_connected(self) -> bool:
        return self._sync(self._client.is_connected)

    def last_activity(self) -> float:
        return self._client.last_activity()

    def disconnect(self, reason: str = "client disconnect") -> None:
        """Disconnects and stops the background thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._client.disconnect(reason))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()
