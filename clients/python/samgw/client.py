"""The asyncio client."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import random
import ssl as ssl_module
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import SamgwError
from .framing import FrameReader
from .message import Message, decode, encode_frame, payload_text
from .sign import load_sign_key, sign

log = logging.getLogger("samgw")

EVENTS = frozenset({"message", "data", "ping", "pong", "keepalive", "close", "auth",
                    "connect", "disconnect", "end", "error", "resubscribed"})

# Bound on bytes written but not yet taken by the kernel (a server that
# stopped reading).
MAX_UNSENT_BYTES = 4 << 20
# The most the client's own control frames (pongs, keepalives) may add to a
# write backlog the server does not drain.
MAX_CONTROL_BACKLOG = 64 << 10

_PONG = '{"message":"pong"}'
_KEEPALIVE = '{"message":"keepalive"}'
_READ_SIZE = 64 * 1024

COMPRESS_DEFLATE = "deflate"
"""The stream compression the protocol defines: raw DEFLATE, sync-flushed."""


def _is_auth_reply(frame: bytes) -> bool:
    try:
        return decode(frame).type == "auth"
    except SamgwError:
        return False


def _agrees_to_compress(frame: bytes) -> bool:
    m = decode(frame)
    return isinstance(m.payload, dict) and m.payload.get("compress") == COMPRESS_DEFLATE


def tls_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl_module.SSLContext:
    """A client TLS context: verify the server with ca (default: the system
    roots); present cert and key for mTLS."""
    ctx = ssl_module.create_default_context(cafile=ca)
    ctx.minimum_version = ssl_module.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class _Session:
    """A live connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(max_frame)
        self.lost: str | None = None
        self.mailbox: collections.deque[Message] = collections.deque()  # mailbox messages not yet handed on
        self.mailbox_worker: asyncio.Task[None] | None = None  # hands them on, in order
        self.to_ack = 0  # the highest mailbox seq handled and not yet acked
        self.jobs: set[asyncio.Task[None]] = set()  # job handlers running for it
        # Stream compression ("compress": "deflate"): what this client sends
        # after its auth frame is one raw DEFLATE stream, sync-flushed at
        # every write; what the server sends after its auth reply, likewise.
        self.deflate: Any = None  # zlib compressor, once the auth frame asked
        self.inflate: Any = None  # zlib decompressor, once the server agreed

    def write(self, data: bytes) -> None:
        """Writes frames, compressed once the auth frame asked for it."""
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.writer.write(data)

    def start_compression(self) -> None:
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def inflated(self, chunk: bytes) -> list[bytes]:
        """What the compressed chunk inflates to, in pieces of at most
        _READ_SIZE (a small chunk may inflate a thousandfold)."""
        out = [self.inflate.decompress(chunk, _READ_SIZE)]
        while self.inflate.unconsumed_tail:
            out.append(self.inflate.decompress(self.inflate.unconsumed_tail, _READ_SIZE))
        return out


class Client:
    """A connection to a samgw server that survives the server: it reconnects
    with backoff after any loss disconnect() did not ask for, and keeps what
    was sent meanwhile in a bounded queue, delivered in order once connected
    again.

    Delivery is at most once: a frame already written to a connection that
    then breaks is not sent again, and a request waiting for its reply raises
    connection_lost. Frames still queued when a connection breaks are sent on
    the next one. Durations are seconds; every default is the Go client's.

    All methods must be called from the event loop the client runs on (see
    SyncClient for threads)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4000, *,
                 keepalive_interval: float = 10.0, keepalive_timeout: float = 30.0,
                 max_frame_size: int = 1 << 20, queue_size: int = 1024,
                 connect_timeout: float = 5.0, linger_timeout: float = 2.0,
                 backoff_min: float = 0.1, backoff_max: float = 30.0, reconnect: bool = True,
                 request_timeout: float = 30.0, ssl: ssl_module.SSLContext | None = None,
                 server_hostname: str | None = None, token: str | None = None,
                 sign_key: Any = None, resume: bool = True, manual_ack: bool = False,
                 dedupe_window: int = 4096, servers: list[str] | None = None,
                 job_progress_every: float = 10.0, topic_route: str = "pubsub",
                 compress: bool = False) -> None:
        for name, v in (("keepalive_interval", keepalive_interval), ("keepalive_timeout", keepalive_timeout),
                        ("max_frame_size", max_frame_size), ("queue_size", queue_size),
                        ("connect_timeout", connect_timeout), ("linger_timeout", linger_timeout),
                        ("backoff_min", backoff_min), ("backoff_max", backoff_max),
                        ("request_timeout", request_timeout), ("dedupe_window", dedupe_window),
                        ("job_progress_every", job_progress_every)):
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        self.host, self.port = host, port
        # servers ("host:port" each) replace host and port: tried in turn, a
        # failed dial moves on to the next, and a reconnection starts with the
        # one after the server it lost (failover across a cluster's nodes).
        self._servers: list[tuple[str, int]] = [_host_port(hp) for hp in servers] if servers else [(host, port)]
        self._next_server = 0
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.max_frame_size = max_frame_size
        self.queue_size = queue_size
        self.connect_timeout = connect_timeout
        self.linger_timeout = linger_timeout
        self.backoff_min = backoff_min
        self.backoff_max = max(backoff_max, backoff_min)
        self.reconnect = reconnect
        self.request_timeout = request_timeout
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._token = token
        self._sign_key = load_sign_key(sign_key) if sign_key is not None else None
        self._resume = resume
        # compress asks the server for stream compression in the auth frame
        # (sent then even without a token): worth it for large text. The
        # server must know the option.
        self._compress = compress
        self._manual_ack = manual_ack
        self._dedupe_window = dedupe_window
        self._job_progress_every = job_progress_every
        self._job_handler: Callable[[Job], Any] | None = None
        # The route subscribe() and unsubscribe() send to: a handler that
        # speaks scripts/examples/pubsub.lua's requests.
        self.topic_route = topic_route
        self._topics: dict[str, list[Any]] = {}  # followed with subscribe(): [offset, epoch] last seen
        self._renewing: dict[str, str] = {}  # request id → topic, of the renewals in flight
        self._seen: dict[str, None] = {}  # mailbox ids handled, oldest first, within dedupe_window
        self.resumed = False
        """Whether the last connection was attached to the identity's mailbox."""
        self.pending = 0
        """How many mailbox messages waited when it authenticated."""

        self._id_prefix = os.urandom(4).hex() + "-"
        self._seq = 0
        self._handlers: dict[str, list[Callable[..., Any]]] = {e: [] for e in EVENTS}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: _Session | None = None
        self._queue: list[tuple[str, bytes]] = []  # (id, frame) waiting for a connection
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._started = False
        self._closed = False
        self._ended = False
        self._stop = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._auth: asyncio.Future[None] | None = None
        self._last_activity = 0.0
        self._last_server_error: SamgwError | None = None

    # --- events ---

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Registers callback for event; usable as a decorator. Callbacks may
        be plain functions or coroutine functions; an exception in one is
        logged, never raised into the client.

        Events: message (every frame), then by type: data (frames that answer
        none of your requests: pushes, echoes of send, and the messages of the
        identity's mailbox, which carry a seq: those are handed on in order,
        a coroutine callback awaited before the next, then acked unless
        manual_ack, and one whose id was handled within dedupe_window is
        dropped), ping (answered with a
        pong for you), pong, keepalive, close, auth; connect, disconnect
        (reason), end (stopped for good), error (a SamgwError: a server error
        frame that answers no request, or invalid input from the server)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {sorted(EVENTS)}")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[event].append(fn)
            return fn

        return register(callback) if callback is not None else register

    def _emit(self, event: str, *args: Any) -> None:
        for fn in list(self._handlers[event]):
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                log.exception("samgw: %s callback failed", event)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("samgw: callback failed", exc_info=task.exception())

    def on_job(self, handler: Callable[[Job], Any] | None = None) -> Any:
        """Makes handler the worker of the jobs this client is handed (data
        frames with a job, which then reach no data callback); usable as a
        decorator. Each job runs on a task of its own, as many at once as the
        server hands out (the worker's prefetch): when the handler returns
        (or its coroutine finishes) the job is acked, when it raises it is
        nacked (another delivery), and while it runs a progress frame every
        job_progress_every seconds keeps its lease. The task is cancelled
        when the connection that received the job is lost: the server has
        given it back."""
        def register(fn: Callable[[Job], Any]) -> Callable[[Job], Any]:
            self._job_handler = fn
            return fn

        return register(handler) if handler is not None else register

    def answer_job(self, type: str, job: str) -> None:
        """Answers a job seen as a data event (without on_job): "ack",
        "nack" or "progress". Raises connection_lost while disconnected (the
        job went back with the connection that received it)."""
        if type not in ("ack", "nack", "progress"):
            raise ValueError(f"answer_job: {type!r} is not ack, nack or progress")
        s = self._session
        if s is None or s.lost is not None:
            raise SamgwError(errors.CONNECTION_LOST, f"{type} of job {job}: not connected (the job went back to its queue)")
        s.write(_job_frame(type, job, self._next_id()))

    # --- public API ---

    async def connect(self) -> None:
        """Makes the first connection and, with a token, waits until the
        server accepted it. Raises SamgwError connect_failed, or the server's
        code (unauthorized, ...); later losses are repaired in the background."""
        if self._started or self._closed:
            raise SamgwError(errors.CLIENT_CLOSED, "connect: the client was already started")
        self._started = True
        try:
            reader, writer = await self._dial()
        except (OSError, asyncio.TimeoutError, ssl_module.SSLError) as e:
            self._finish()
            raise SamgwError(errors.CONNECT_FAILED, f"connect to {self._where()}: {e or type(e).__name__}") from e
        loop = asyncio.get_running_loop()
        if self._token or self._compress:
            self._auth = loop.create_future()
        self._start_session(reader, writer)
        self._run_task = asyncio.create_task(self._run())
        if self._auth is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._auth), self.connect_timeout)
        except (SamgwError, asyncio.TimeoutError) as e:
            await self.disconnect("authentication failed")
            if isinstance(e, SamgwError):
                raise SamgwError(e.code, f"authenticate to {self._where()}: {e.detail}") from e
            raise SamgwError(errors.TIMEOUT, "no answer to the auth frame") from e
        finally:
            self._auth = None

    def send(self, payload: Any, *, route: str | None = None, id: str | None = None) -> str:
        """Sends a data message and returns its id; queued while disconnected."""
        return self.send_message("data", payload, route=route, id=id)

    def send_message(self, type: str, payload: Any = None, *, route: str | None = None, id: str | None = None) -> str:
        """Sends a message of any type (payload None: none) and returns its id."""
        id = id or self._next_id()
        self._write(id, self._frame(type, id, payload, route))
        return id

    async def request(self, payload: Any, *, route: str | None = None, timeout: float | None = None) -> Message:
        """Sends a data message and returns the reply carrying its id; an
        ``error`` reply raises SamgwError with the server's code and message."""
        return await self._request("data", payload, route, timeout)

    async def ping(self, timeout: float | None = None) -> float:
        """Sends a ping and returns the round trip in seconds."""
        start = time.perf_counter()
        await self._request("ping", {"message": "ping"}, None, timeout)
        return time.perf_counter() - start

    async def disconnect(self, reason: str = "client disconnect") -> None:
        """Sends close {"reason": reason}, waits (up to linger_timeout) for the
        server to acknowledge, and stops the client for good: queued frames
        are dropped and waiting requests raise client_closed."""
        if self._closed:
            if self._run_task is not None:
                await asyncio.shield(self._run_task)
            return
        self._closed = True
        self._stop.set()
        s = self._session
        if s is not None and s.lost is None:
            close = encode_frame("close", self._next_id(), _now(), payload_text({"reason": reason}))
            s.write(close)
        if self._run_task is not None and not self._run_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._run_task), self.linger_timeout)
            except asyncio.TimeoutError:
                if self._session is not None:
                    self._session.writer.transport.abort()
                await self._run_task
        self._finish()

    # --- topics ---

    async def subscribe(self, topic: str, *, timeout: float | None = None) -> Message:
        """Follows a topic through the topic route: sends
        ``{"subscribe": topic}``, with ``since`` and ``epoch`` when
        publications of it were seen, and returns the answer. The client then
        remembers the offset of each publication it receives, drops one it
        had already, and after every reconnect subscribes again from the last
        one, so a topic with history on the server (--topic-history)
        delivers what was missed meanwhile; ``resubscribed`` events
        (topic, reply, error) carry those answers."""
        reply = await self.request(self._subscribe_request(topic), route=self.topic_route, timeout=timeout)
        err = self._subscribe_answered(topic, reply)
        if err is not None:
            raise err
        return reply

    async def unsubscribe(self, topic: str, *, timeout: float | None = None) -> Message:
        """Leaves a topic (``{"unsubscribe": topic}``) and stops following it."""
        self._topics.pop(topic, None)
        return await self.request({"unsubscribe": topic}, route=self.topic_route, timeout=timeout)

    def topic_offset(self, topic: str) -> tuple[int, str] | None:
        """The last position (offset, epoch) seen of a followed topic with
        history, or None."""
        p = self._topics.get(topic)
        return (p[0], p[1]) if p is not None and p[1] else None

    def _subscribe_request(self, topic: str) -> dict[str, Any]:
        p = self._topics.get(topic)
        if p is not None and p[1]:
            return {"subscribe": topic, "since": p[0], "epoch": p[1]}
        return {"subscribe": topic}

    def _subscribe_answered(self, topic: str, reply: Message) -> SamgwError | None:
        """Follows topic from the position the answer gives, unless it has
        seen further in that epoch."""
        a = reply.payload if isinstance(reply.payload, dict) else {}
        if a.get("subscribed") is not True:
            return SamgwError(errors.NOT_SUBSCRIBED, f"subscribe {topic}: answered {reply.payload!r}")
        p = self._topics.setdefault(topic, [0, ""])
        offset, epoch = a.get("offset"), a.get("epoch")
        if isinstance(epoch, str) and epoch and isinstance(offset, int) and (epoch != p[1] or offset > p[0]):
            p[0], p[1] = offset, epoch
        return None

    def _seen_publication(self, m: Message) -> bool:
        """Records a publication of a followed topic; whether it was seen before."""
        p = self._topics.get(m.topic or "")
        if p is None:
            return False
        if p[1] == (m.epoch or "") and (m.offset or 0) <= p[0]:
            return True
        p[0], p[1] = m.offset, m.epoch or ""
        return False

    def is_connected(self) -> bool:
        """Whether a connection is up now."""
        return self._session is not None and self._session.lost is None

    def last_activity(self) -> float:
        """When the last frame arrived (or the connection was made), Unix seconds."""
        return self._last_activity

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    # --- sending ---

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._id_prefix}{self._seq}"

    def _frame(self, type: str, id: str, payload: Any, route: str | None) -> bytes:
        text = None if payload is None else payload_text(payload)
        ts = _now()
        sig = None
        if self._sign_key is not None and type == "data":
            sig = sign(self._sign_key, id, ts, route or "", text or "")
        return encode_frame(type, id, ts, text, route, sig)

    def _write(self, id: str, frame: bytes) -> None:
        if self._closed:
            raise SamgwError(errors.CLIENT_CLOSED, "the client is closed")
        s = self._session
        if s is not None and s.lost is None:
            if s.writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                raise SamgwError(errors.QUEUE_FULL, f"more than {MAX_UNSENT_BYTES} bytes wait for the server to read them")
            s.write(frame)
            return
        if len(self._queue) >= self.queue_size:
            raise SamgwError(errors.QUEUE_FULL, f"{self.queue_size} frames already wait for a connection")
        self._queue.append((id, frame))

    async def _request(self, type: str, payload: Any, route: str | None, timeout: float | None) -> Message:
        id = self._next_id()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[id] = fut
        try:
            self._write(id, self._frame(type, id, payload, route))
            return await asyncio.wait_for(fut, timeout if timeout is not None else self.request_timeout)
        except asyncio.TimeoutError:
            raise SamgwError(errors.TIMEOUT, f"request {id}: no reply in time") from None
        finally:
            self._waiters.pop(id, None)

    # --- connections ---

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connects to the first of the servers, from the next one on, that
        answers; the next dial starts after it."""
        failures: list[str] = []
        last: BaseException | None = None
        for i in range(len(self._servers)):
            k = (self._next_server + i) % len(self._servers)
            host, port = self._servers[k]
            try:
                conn = await self._dial_one(host, port)
            except (OSError, asyncio.TimeoutError, ssl_module.SSLError) as e:
                failures.append(f"{host}:{port}: {e or type(e).__name__}")
                last = e
                continue
            self._next_server = k + 1
            return conn
        if len(failures) == 1 and isinstance(last, (OSError, asyncio.TimeoutError, ssl_module.SSLError)):
            raise last
        raise OSError("; ".join(failures))

    async def _dial_one(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kwargs: dict[str, Any] = {}
        if self._ssl is not None:
            kwargs = {"ssl": self._ssl, "server_hostname": self._server_hostname or host,
                      "ssl_handshake_timeout": self.connect_timeout}
        return await asyncio.wait_for(asyncio.open_connection(host, port, **kwargs), self.connect_timeout)

    def _where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self._servers)

    def _start_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = _Session(reader, writer, self.max_frame_size)
        self._session = s
        self._last_activity = time.time()
        self._last_server_error = None
        if self._token or self._compress:
            auth: dict[str, Any] = {}
            if self._token:
                auth["token"] = self._token
                if self._resume:
                    auth["resume"] = True
            if self._compress:
                auth["compress"] = COMPRESS_DEFLATE
            s.write(encode_frame("auth", self._next_id(), _now(), payload_text(auth)))
            if self._compress:
                s.start_compression()  # everything after the auth frame
        self._renewing = {}  # the last connection's are never answered
        for topic in self._topics:
            id = self._next_id()
            self._renewing[id] = topic
            s.write(self._frame("data", id, self._subscribe_request(topic), self.topic_route))
        queued, self._queue = self._queue, []
        for _, frame in queued:
            s.write(frame)
        self._emit("connect")

    async def _run(self) -> None:
        """The connection loop: serve a connection until it ends, then
        reconnect with backoff unless the client is closing."""
        backoff = self.backoff_min
        while True:
            s = self._session
            assert s is not None
            reason = await self._serve(s)
            self._lose(s, reason)
            if self._closed:
                return
            if not self.reconnect:
                self._finish()
                return
            while True:
                # Equal jitter: between half and all of the backoff, so
                # clients dropped together do not return together.
                delay = backoff / 2 + random.uniform(0, backoff / 2)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return  # disconnect() was called
                except asyncio.TimeoutError:
                    pass
                backoff = min(2 * backoff, self.backoff_max)
                try:
                    reader, writer = await self._dial()
                except (OSError, asyncio.TimeoutError, ssl_module.SSLError) as e:
                    log.debug("samgw: reconnect failed: %s", e)
                    continue
                if self._closed:
                    writer.close()
                    return
                backoff = self.backoff_min
                self._start_session(reader, writer)
                break

    async def _serve(self, s: _Session) -> str:
        """Reads s until it ends and returns why."""
        keepalive = asyncio.create_task(self._keepalive(s))
        try:
            last_frame = time.monotonic()
            while True:
                # The dead-peer deadline counts from the last whole frame:
                # a server that drips bytes of a frame that never ends is
                # dead all the same.
                left = self.keepalive_timeout - (time.monotonic() - last_frame)
                if left <= 0:
                    return "keepalive timeout"
                try:
                    chunk = await asyncio.wait_for(s.reader.read(_READ_SIZE), left)
                except asyncio.TimeoutError:
                    return "keepalive timeout"
                except (OSError, ssl_module.SSLError) as e:
                    return str(e) or type(e).__name__
                if not chunk:
                    return "connection closed by the server"
                try:
                    frames, compressed = self._split(s, chunk)
                except SamgwError as e:
                    self._emit("error", e)
                    return e.detail
                if frames:
                    last_frame = time.monotonic()
                    self._last_activity = time.time()
                for frame in frames:
                    reason = self._dispatch(s, frame)
                    if reason is not None:
                        return reason
                if compressed:
                    # The server's bytes after its auth reply are compressed:
                    # the rest of this chunk too.
                    try:
                        frames, _ = self._split(s, compressed)
                    except SamgwError as e:
                        self._emit("error", e)
                        return e.detail
                    for frame in frames:
                        reason = self._dispatch(s, frame)
                        if reason is not None:
                            return reason
        finally:
            keepalive.cancel()
            s.writer.close()

    def _split(self, s: _Session, chunk: bytes) -> tuple[list[bytes], bytes]:
        """The frames a chunk completes. Until the server's auth reply on a
        connection that asked for compression, the frames stop after that
        reply, and the bytes after it are returned too."""
        if s.inflate is not None:
            frames = []
            try:
                for piece in s.inflated(chunk):
                    frames += s.frames.push(piece)
            except zlib.error as e:
                raise SamgwError(errors.INVALID_MESSAGE, f"invalid compressed stream: {e}") from e
            return frames, b""
        if s.deflate is None:
            return s.frames.push(chunk), b""
        frames, rest = s.frames.push_until(chunk, _is_auth_reply)
        if rest is None:
            return frames, b""
        if not _agrees_to_compress(frames[-1]):
            raise SamgwError(errors.INVALID_MESSAGE, "the server did not agree to compression")
        s.inflate = zlib.decompressobj(-15)
        return frames, rest

    async def _keepalive(self, s: _Session) -> None:
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if s.lost is None and s.writer.transport.get_write_buffer_size() <= MAX_CONTROL_BACKLOG:
                s.write(encode_frame("keepalive", self._next_id(), _now(), _KEEPALIVE))

    def _dispatch(self, s: _Session, frame: bytes) -> str | None:
        """Handles one frame; returns a reason when the server closed."""
        try:
            m = decode(frame)
        except SamgwError as e:
            self._emit("error", e)
            return None
        if m.type == "data" and m.topic is not None and m.offset and self._seen_publication(m):
            return None  # had it: delivered again by a recovery
        self._emit("message", m)
        if m.type == "ping":
            # A server that pings and never reads would have one pong queued
            # per ping, without end: past the backlog, pongs are dropped (its
            # own keep-alive timeout decides about us).
            if s.writer.transport.get_write_buffer_size() <= MAX_CONTROL_BACKLOG:
                s.write(encode_frame("pong", m.id or self._next_id(), _now(), _PONG))
            self._emit("ping", m)
            return None
        if m.type == "close":
            p = m.payload if isinstance(m.payload, dict) else {}
            self._emit("close", m)
            return f"closed by the server: {p.get('reason') or p.get('message') or 'no reason given'}"
        if m.type == "data" and m.seq:
            # Never a reply, whatever its id. Handed on by a task of its own,
            # so a callback that awaits a request of this client is not
            # waiting for the reader it holds up.
            s.mailbox.append(m)
            if s.mailbox_worker is None or s.mailbox_worker.done():
                s.mailbox_worker = asyncio.ensure_future(self._hand_on_mailbox(s))
                self._tasks.add(s.mailbox_worker)
                s.mailbox_worker.add_done_callback(self._callback_done)
            return None
        if m.type == "data" and m.job is not None and self._job_handler is not None:
            task = asyncio.ensure_future(self._run_job(s, Job(queue=m.route or "", id=m.job, payload=m.payload)))
            s.jobs.add(task)
            task.add_done_callback(s.jobs.discard)
            return None  # never a reply either
        if m.type == "auth":
            p = m.payload if isinstance(m.payload, dict) else {}
            self.resumed = p.get("resume") is True
            pending = p.get("pending")
            self.pending = pending if self.resumed and isinstance(pending, int) and not isinstance(pending, bool) else 0
            if self._auth is not None and not self._auth.done():
                self._auth.set_result(None)
            self._emit("auth", m)
            return None
        if m.type == "keepalive":
            self._emit("keepalive", m)
            return None
        # data, pong, error: a reply goes to its request only.
        err = None
        if m.type == "error":
            p = m.payload if isinstance(m.payload, dict) else {}
            err = SamgwError(str(p.get("code", "error")), str(p.get("message", "")))
            if err.code == "unauthorized" and self._auth is not None and not self._auth.done():
                self._auth.set_exception(err)
        renewed = self._renewing.pop(m.id, None) if m.id is not None else None
        if renewed is not None:
            if err is None:
                err = self._subscribe_answered(renewed, m)
            self._emit("resubscribed", renewed, None if err else m, err)
            return None
        fut = self._waiters.pop(m.id, None) if m.id is not None else None
        if fut is not None:
            if not fut.done():
                if err is not None:
                    fut.set_exception(err)
                else:
                    fut.set_result(m)
            return None
        if err is not None:
            self._last_server_error = err
            self._emit("error", err)
        elif m.type == "data":
            self._emit("data", m)
        else:
            self._emit("pong", m)
        return None

    async def _hand_on_mailbox(self, s: _Session) -> None:
        """Hands on s's mailbox messages in order, each after the callbacks
        of the one before have finished, and acks once none is left (acks
        are cumulative: one for a burst). It stops with the connection: what
        it did not ack comes again after the reconnect."""
        while s.mailbox and s.lost is None:
            await self._mailbox_message(s, s.mailbox.popleft())
            if not s.mailbox and s.to_ack and s.lost is None:
                s.write(_ack_frame(s.to_ack, self._next_id()))
                s.to_ack = 0

    async def _mailbox_message(self, s: _Session, m: Message) -> None:
        """Hands on a mailbox message (unless its id was handled within the
        window: a redelivery after a reconnect), waiting for coroutine
        callbacks, then marks it for the ack (unless manual_ack)."""
        mid = m.id or f"m-{m.seq}"
        if mid not in self._seen:
            self._seen[mid] = None
            if len(self._seen) > self._dedupe_window:
                del self._seen[next(iter(self._seen))]
            for fn in list(self._handlers["data"]):
                try:
                    result = fn(m)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("samgw: data callback failed")
        if not self._manual_ack:
            s.to_ack = max(s.to_ack, m.seq or 0)

    async def _run_job(self, s: _Session, job: Job) -> None:
        """Runs the job handler, reporting progress meanwhile, then acks (or,
        when it raised, nacks) the job on s."""
        handler = self._job_handler
        assert handler is not None

        async def progress() -> None:
            while True:
                await asyncio.sleep(self._job_progress_every)
                if s.lost is None:
                    s.write(_job_frame("progress", job.id, self._next_id()))

        beat = asyncio.ensure_future(progress())
        answer = "ack"
        try:
            result = handler(job)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise  # the connection was lost: the job went back with it
        except Exception:
            log.exception("samgw: job %s of %s failed; it goes back to its queue", job.id, job.queue)
            answer = "nack"
        finally:
            beat.cancel()
        if s.lost is None:
            s.write(_job_frame(answer, job.id, self._next_id()))

    def ack(self, seq: int) -> None:
        """Acks the mailbox messages up to seq (cumulative); only needed with
        manual_ack. Raises connection_lost while disconnected (the message
        comes again after the reconnect)."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq <= 0:
            raise ValueError(f"ack: seq must be a positive integer, got {seq!r}")
        s = self._session
        if s is None or s.lost is not None:
            raise SamgwError(errors.CONNECTION_LOST, f"ack {seq}: not connected (the message comes again after the reconnect)")
        s.write(_ack_frame(seq, self._next_id()))

    def _lose(self, s: _Session, reason: str) -> None:
        """Ends session s: requests whose frames were written fail."""
        if s.lost is not None:
            return
        s.lost = reason
        s.writer.close()
        for task in list(s.jobs):
            task.cancel()
        if self._session is s:
            self._session = None
        said = f" (the server said {self._last_server_error})" if self._last_server_error else ""
        queued = {id for id, _ in self._queue}
        for id, fut in list(self._waiters.items()):
            if id in queued or fut.done():
                continue
            del self._waiters[id]
            if self._closed:
                fut.set_exception(SamgwError(errors.CLIENT_CLOSED, f"request {id}: the client disconnected"))
            else:
                fut.set_exception(SamgwError(errors.CONNECTION_LOST, f"request {id}: the connection was lost ({reason}){said}"))
        if self._auth is not None and not self._auth.done():
            self._auth.set_exception(self._last_server_error or SamgwError(
                errors.CONNECTION_LOST, f"the connection ended before authentication: {reason}"))
        self._emit("disconnect", reason)

    def _finish(self) -> None:
        """Stops the client for good."""
        self._closed = True
        self._stop.set()
        self._queue = []
        for id, fut in list(self._waiters.items()):
            if not fut.done():
                fut.set_exception(SamgwError(errors.CLIENT_CLOSED, f"request {id}: the client disconnected"))
        self._waiters.clear()
        if self._session is not None:
            self._lose(self._session, "client closed")
        if not self._ended:
            self._ended = True
            self._emit("end")


def _host_port(hp: str) -> tuple[str, int]:
    host, sep, port = hp.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"servers: {hp!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass
class Job:
    """A job of a work queue handed to this client as a worker."""

    queue: str
    """The queue (the data frame's route)."""
    id: str
    payload: Any


def _job_frame(type: str, job: str, id: str) -> bytes:
    return encode_frame(type, id, _now(), payload_text({"job": job}))


def _ack_frame(seq: int, id: str) -> bytes:
    return encode_frame("ack", id, _now(), f'{{"seq":{seq}}}')


def _now() -> int:
    return time.time_ns() // 1_000_000

