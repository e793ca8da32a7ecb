"""The client against fake servers over real loopback sockets: what a real
samgw never does (coalesced and split writes on purpose, garbage, silence,
oversized frames, dropped connections at chosen moments)."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
import time
import unittest
from typing import Any

from samgw import Client, FrameReader, SamgwError, signed_bytes

from .harness import WAIT, FakeServer, Peer, frame


class Events:
    """Collects a client's events of one kind."""

    def __init__(self, client: Client, event: str) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()
        client.on(event, self._add)

    def _add(self, *args: Any) -> None:
        self.items.append(args[0] if args else None)
        self._changed.set()

    async def first(self, n: int) -> list[Any]:
        async def wait() -> None:
            while len(self.items) < n:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), WAIT)
        return self.items[:n]


async def answer_auth(srv: FakeServer, n: int, **mailbox: Any) -> tuple[Peer, dict[str, Any]]:
    """Takes connection n of srv, reads its auth frame and answers it as
    samgw does, with the mailbox fields given; returns the peer and the
    client's auth frame."""
    peer = await srv.accept(n)
    auth = await peer.next("auth")
    peer.write(frame({"type": "auth", "id": auth["id"], "payload": {"ok": True, "identity": "a", **mailbox}}))
    return peer, auth


async def disconnect_via(c: Client, peer: Peer, reason: str = "bye") -> dict[str, Any]:
    """Disconnects c, answering its close frame as samgw does; returns the frame."""
    task = asyncio.create_task(c.disconnect(reason))
    close = await peer.next("close")
    peer.writer.close()
    await asyncio.wait_for(task, WAIT)
    return close


class FrameReaderTest(unittest.TestCase):
    def test_split_at_every_byte(self) -> None:
        stream = '{"a":1}\n\r\n{"b":"ü"}\r\n\n{"c":[1,2]}\n'.encode()
        want = [b'{"a":1}', '{"b":"ü"}'.encode(), b'{"c":[1,2]}']
        for cut in range(len(stream) + 1):
            r = FrameReader(64)
            self.assertEqual(r.push(stream[:cut]) + r.push(stream[cut:]), want, f"cut at {cut}")

    def test_limit(self) -> None:
        self.assertEqual(FrameReader(64).push(b"x" * 64 + b"\r\n"), [b"x" * 64])
        with self.assertRaises(SamgwError) as e:
            FrameReader(64).push(b"y" * 65 + b"\n")
        self.assertEqual(e.exception.code, "frame_too_large")
        # The bound holds before any newline: a frame that never ends is refused at the limit.
        r = FrameReader(64)
        for _ in range(6):
            r.push(b"z" * 10)
        with self.assertRaises(SamgwError):
            r.push(b"z" * 10)

    def test_signed_bytes_readme_example(self) -> None:
        self.assertEqual(signed_bytes("m1", 1764100000000, "chat", '{"a":1}'),
                         b'samgw-sig-v1\nm1\n1764100000000\nchat\n{"a":1}')


class ClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.srv = await FakeServer.start()

    async def asyncTearDown(self) -> None:
        await self.srv.close()

    async def test_coalesced_and_split_frames(self) -> None:
        c = Client(port=self.srv.port)
        data = Events(c, "data")
        await c.connect()
        peer = await self.srv.accept(0)
        peer.write(frame({"type": "data", "payload": 1}) + frame({"type": "data", "payload": 2}) + frame({"type": "data", "payload": 3}))
        split = frame({"type": "data", "payload": {"text": "split ✓", "big": 12345678901234567890}}).replace(b"\\u2713", "✓".encode())
        for part in (split[:5], split[5:16], split[16:]):  # one cut lands inside the multi-byte ✓
            peer.write(part)
            await peer.writer.drain()
        got = [m.payload for m in await data.first(4)]
        self.assertEqual(got, [1, 2, 3, {"text": "split ✓", "big": 12345678901234567890}])
        await disconnect_via(c, peer)

    async def test_invalid_input_is_an_error_event(self) -> None:
        c = Client(port=self.srv.port)
        errors = Events(c, "error")
        data = Events(c, "data")
        await c.connect()
        peer = await self.srv.accept(0)
        peer.write(b'not json\n[1,2]\n{"type":"teleport"}\n{"type":"data","id":7}\nNaN\n')
        peer.write(bytes([0x7B, 0xFF, 0xFE, 0x7D, 0x0A]))  # invalid UTF-8
        peer.write(frame({"type": "error", "payload": {"code": "rate_limited", "message": "slow down"}}))
        peer.write(frame({"type": "data", "payload": "still here"}))
        got = await errors.first(7)
        self.assertEqual([e.code for e in got], ["invalid_json", "invalid_message", "invalid_message",
                                                 "invalid_message", "invalid_json", "invalid_json", "rate_limited"])
        self.assertIn("slow down", str(got[6]))
        self.assertEqual((await data.first(1))[0].payload, "still here")
        self.assertTrue(c.is_connected())
        self.assertEqual(len(self.srv.conns), 1)
        await disconnect_via(c, peer)

    async def test_frame_over_limit_drops_the_connection_and_reconnects(self) -> None:
        c = Client(port=self.srv.port, max_frame_size=1024, backoff_min=0.02, backoff_max=0.1)
        errors = Events(c, "error")
        lost = Events(c, "disconnect")
        await c.connect()
        peer = await self.srv.accept(0)
        peer.write(b"x" * 600)
        peer.write(b"x" * 600)  # no newline yet: refused at the limit, not at the newline
        self.assertEqual((await errors.first(1))[0].code, "frame_too_large")
        self.assertIn("longer than 1024 bytes", (await lost.first(1))[0])
        await disconnect_via(c, await self.srv.accept(1))

    async def test_compression_after_the_auth_frame(self) -> None:
        c = Client(port=self.srv.port, token="t", resume=False, compress=True)
        data = Events(c, "data")
        connecting = asyncio.create_task(c.connect())
        peer = await self.srv.accept(0)
        auth = await peer.next("auth")
        self.assertEqual(auth["payload"], {"token": "t", "compress": "deflate"})
        # The agreeing reply and, in the same write, the first compressed frame.
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        reply = frame({"type": "auth", "id": auth["id"], "payload": {"ok": True, "identity": "a", "compress": "deflate"}})
        peer.write(reply + z.compress(frame({"type": "data", "payload": "squeezed " * 50})) + z.flush(zlib.Z_SYNC_FLUSH))
        await asyncio.wait_for(connecting, WAIT)
        self.assertEqual([m.payload for m in await data.first(1)], ["squeezed " * 50])
        # What the client sends now is one raw DEFLATE stream.
        c.send({"n": 1, "text": "repeated " * 100})
        d = zlib.decompressobj(-15)
        wire, plain = 0, b""
        while b"\n" not in plain:
            chunk = await asyncio.wait_for(peer.reader.read(1 << 16), WAIT)
            self.assertTrue(chunk, "the client hung up")
            wire += len(chunk)
            plain += d.decompress(chunk)
        sent = json.loads(plain.split(b"\n")[0])
        self.assertEqual(sent["payload"], {"n": 1, "text": "repeated " * 100})
        self.assertLess(wire * 5, len(plain), "compressed on the wire")
        task = asyncio.create_task(c.disconnect("bye"))
        peer.writer.close()
        await asyncio.wait_for(task, WAIT)

    async def test_compression_refused(self) -> None:
        c = Client(port=self.srv.port, compress=True, reconnect=False)
        connecting = asyncio.create_task(c.connect())
        peer = await self.srv.accept(0)
        auth = await peer.next("auth")
        self.assertEqual(auth["payload"], {"compress": "deflate"})
        peer.write(frame({"type": "auth", "id": auth["id"], "payload": {"ok": True, "identity": ""}}))
        with self.assertRaises(SamgwError):
            await asyncio.wait_for(connecting, WAIT)

    async def test_keepalive_and_pong(self) -> None:
        c = Client(port=self.srv.port, keepalive_interval=0.03)
        await c.connect()
        peer = await self.srv.accept(0)
        k1, k2 = await peer.next("keepalive"), await peer.next("keepalive")
        self.assertEqual(k1["payload"], {"message": "keepalive"})
        self.assertNotEqual(k1["id"], k2["id"])
        peer.write(frame({"type": "ping", "id": "srv-ping-1"}))
        self.assertEqual((await peer.next("pong"))["id"], "srv-ping-1")
        await disconnect_via(c, peer)

    async def test_silent_server_is_declared_dead_after_the_timeout(self) -> None:
        c = Client(port=self.srv.port, keepalive_timeout=0.2, backoff_min=5)
        lost = Events(c, "disconnect")
        start = time.monotonic()
        await c.connect()
        peer = await self.srv.accept(0)
        peer.write(frame({"type": "keepalive", "payload": {"message": "keepalive"}}))
        reason = (await lost.first(1))[0]
        elapsed = time.monotonic() - start
        self.assertEqual(reason, "keepalive timeout")
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertFalse(c.is_connected())
        await c.disconnect()

    async def test_a_frame_nested_100000_deep_is_an_error_and_the_client_goes_on(self) -> None:
        c = Client(port=self.srv.port)
        errors = Events(c, "error")
        data = Events(c, "data")
        await c.connect()
        peer = await self.srv.accept(0)
        deep = b'{"type":"data","payload":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
        peer.write(deep + frame({"type": "data", "payload": '["not nesting"]'}) + frame({"type": "data", "payload": "after"}))
        err = (await errors.first(1))[0]
        self.assertEqual(err.code, "invalid_message")
        self.assertIn("nested deeper than 64", str(err))
        self.assertEqual([m.payload for m in await data.first(2)], ['["not nesting"]', "after"])
        self.assertTrue(c.is_connected())
        # A frame past the scan's reach still cannot kill the reading task.
        self.assertIsNone(c._dispatch(c._session, b'{"type":"data","payload":' + b"[" * 50 + b"]" * 50 + b"}"))
        await disconnect_via(c, peer)

    async def test_a_ping_flood_from_a_server_that_never_reads_stays_bounded(self) -> None:
        c = Client(port=self.srv.port, keepalive_interval=10, keepalive_timeout=60)
        pings = Events(c, "ping")
        await c.connect()
        peer = await self.srv.accept(0)
        peer.writer.transport.pause_reading()  # never reads what the client writes
        burst = frame({"type": "ping", "id": "p"}) * 10_000
        rounds = 30  # 300,000 pings: 18 MB of pongs if each were queued
        for _ in range(rounds):
            peer.write(burst)
            await asyncio.wait_for(peer.writer.drain(), WAIT)
        await pings.first(rounds * 10_000)
        backlog = c._session.writer.transport.get_write_buffer_size()
        self.assertLessEqual(backlog, (64 << 10) + 256, f"the client holds {backlog} bytes of pongs")
        self.assertTrue(c.is_connected())
        peer.writer.transport.resume_reading()
        await disconnect_via(c, peer)

    async def test_a_server_that_drips_bytes_is_dead_at_the_timeout(self) -> None:
        c = Client(port=self.srv.port, keepalive_timeout=0.4, keepalive_interval=10, backoff_min=5)
        lost = Events(c, "disconnect")
        await c.connect()
        peer = await self.srv.accept(0)
        start = time.monotonic()

        async def drip() -> None:  # the server's behaviour under test, not a wait
            while True:
                peer.write(b"x")
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        reason = (await lost.first(1))[0]
        dripping.cancel()
        elapsed = time.monotonic() - start
        self.assertEqual(reason, "keepalive timeout")
        self.assertTrue(0.39 <= elapsed < 5, f"declared dead after {elapsed} s")
        await c.disconnect()

    async def test_at_most_once_and_the_queue_in_order(self) -> None:
        c = Client(port=self.srv.port, backoff_min=0.02, backoff_max=0.05, token="tok")
        queued: list[str] = []

        def on_lost(_: str) -> None:
            if not queued:  # disconnected now: these wait for the next connection
                queued.extend([c.send({"q": 1}), c.send({"q": 2}), c.send({"q": 3})])
        c.on("disconnect", on_lost)
        connecting = asyncio.create_task(c.connect())
        first = await self.srv.accept(0)
        auth = await first.next("auth")
        self.assertEqual(auth["payload"], {"token": "tok", "resume": True})  # resume by default
        first.write(frame({"type": "auth", "payload": {"ok": True, "identity": "a"}, "id": auth["id"]}))
        await asyncio.wait_for(connecting, WAIT)
        req = asyncio.create_task(c.request({"r": 1}))
        self.assertEqual((await first.next("data"))["payload"], {"r": 1})
        first.writer.transport.abort()
        with self.assertRaises(SamgwError) as e:
            await asyncio.wait_for(req, WAIT)
        self.assertEqual(e.exception.code, "connection_lost")
        second = await self.srv.accept(1)
        self.assertEqual((await second.next())["type"], "auth", "auth comes first on every connection")
        got = [await second.next("data") for _ in range(3)]
        self.assertEqual([m["payload"] for m in got], [{"q": 1}, {"q": 2}, {"q": 3}])
        self.assertEqual([m["id"] for m in got], queued)
        c.send({"marker": True})  # the written request was not sent again
        self.assertEqual((await second.next("data"))["payload"], {"marker": True})
        await disconnect_via(c, second)

    async def test_mailbox(self) -> None:
        """One cumulative ack per chunk, after the data callbacks (coroutines
        awaited); duplicates by id dropped across reconnects; manual_ack; a
        bad seq is an error event."""
        c = Client(port=self.srv.port, backoff_min=0.02, backoff_max=0.05, token="tok")
        data, errors = Events(c, "data"), Events(c, "error")
        done: list[int] = []

        @c.on("data")
        async def slow(m: Any) -> None:
            await asyncio.sleep(0)  # a coroutine callback: awaited before the ack
            done.append(m.seq)
        connecting = asyncio.create_task(c.connect())
        first, auth = await answer_auth(self.srv, 0, resume=True, pending=3)
        await asyncio.wait_for(connecting, WAIT)
        self.assertEqual((c.resumed, c.pending), (True, 3))
        first.write(frame({"type": "data", "id": "m1", "seq": 4, "payload": 1}) + frame({"type": "data", "id": "m2", "seq": 7, "payload": 2})
                    + frame({"type": "data", "id": "m3", "seq": 9, "payload": 3, "route": "inbox"}))
        self.assertEqual([(m.seq, m.payload) for m in await data.first(3)], [(4, 1), (7, 2), (9, 3)])
        self.assertEqual((await first.next("ack"))["payload"], {"seq": 9})
        self.assertEqual(done, [4, 7, 9], "the ack came after every callback had finished")
        first.write(frame({"type": "data", "id": "bad", "seq": -1, "payload": 0}) + frame({"type": "data", "id": "bad2", "seq": 1.5, "payload": 0}))
        self.assertTrue(all(e.code == "invalid_message" for e in await errors.first(2)))
        first.writer.transport.abort()
        second, auth = await answer_auth(self.srv, 1, resume=True, pending=2)
        second.write(frame({"type": "data", "id": "m2", "seq": 7, "payload": 2}) + frame({"type": "data", "id": "m3", "seq": 9, "payload": 3}))
        self.assertEqual((await second.next("ack"))["payload"], {"seq": 9}, "duplicates are acked")
        second.write(frame({"type": "data", "id": "m4", "seq": 12, "payload": 4}))
        self.assertEqual((await data.first(4))[3].payload, 4)
        self.assertEqual(len(data.items), 4, "m2 and m3 were not handed on twice")
        await disconnect_via(c, second)

        m = Client(port=self.srv.port, token="tok", manual_ack=True)
        mdata = Events(m, "data")
        connecting = asyncio.create_task(m.connect())
        third, auth = await answer_auth(self.srv, 2, resume=True, pending=1)
        await asyncio.wait_for(connecting, WAIT)
        third.write(frame({"type": "data", "id": "x", "seq": 20, "payload": "x"}))
        await mdata.first(1)
        m.ack(20)
        nxt = await third.next()
        self.assertEqual((nxt["type"], nxt["payload"]), ("ack", {"seq": 20}), "the first frame after the message is the manual ack")
        with self.assertRaises(ValueError):
            m.ack(0)
        await disconnect_via(m, third)

        plain = Client(port=self.srv.port, token="tok", resume=False)
        connecting = asyncio.create_task(plain.connect())
        fourth, auth = await answer_auth(self.srv, 3)
        self.assertEqual(auth["payload"], {"token": "tok"})
        await asyncio.wait_for(connecting, WAIT)
        self.assertEqual((plain.resumed, plain.pending), (False, 0))
        await disconnect_via(plain, fourth)

    async def test_mailbox_callback_may_await_a_request(self) -> None:
        """A coroutine data callback that awaits a request of the same client
        for a mailbox message gets its reply (the reader is not held), and
        the ack follows once it has finished."""
        c = Client(port=self.srv.port, token="tok")
        replies: list[Any] = []

        @c.on("data")
        async def work(m: Any) -> None:
            replies.append((await c.request({"for": m.seq})).payload)
        connecting = asyncio.create_task(c.connect())
        peer, auth = await answer_auth(self.srv, 0, resume=True, pending=1)
        await asyncio.wait_for(connecting, WAIT)
        peer.write(frame({"type": "data", "id": "m1", "seq": 3, "payload": "job"}))
        req = await peer.next("data")
        self.assertEqual(req["payload"], {"for": 3})
        peer.write(frame({"type": "data", "id": req["id"], "payload": "done"}))
        self.assertEqual((await peer.next("ack"))["payload"], {"seq": 3})
        self.assertEqual(replies, ["done"])
        await disconnect_via(c, peer)

    async def test_servers_fail_over(self) -> None:
        """A dial that fails moves on to the next server; a lost connection
        fails over to the other."""
        down = await FakeServer.start()
        down_port = down.port
        await down.close()  # nothing listens there now
        b = await FakeServer.start()
        try:
            c = Client(servers=[f"127.0.0.1:{down_port}", f"127.0.0.1:{self.srv.port}", f"127.0.0.1:{b.port}"],
                       backoff_min=0.01, backoff_max=0.02)
            await c.connect()
            first = await self.srv.accept(0)  # the first server refused
            first.writer.transport.abort()
            second = await b.accept(0)  # after it, the next one
            self.assertEqual(len(self.srv.conns), 1)
            await disconnect_via(c, second)
            with self.assertRaises(ValueError):
                Client(servers=["nohost"])
            none = Client(servers=[f"127.0.0.1:{down_port}", f"127.0.0.1:{down_port}"], reconnect=False)
            with self.assertRaises(SamgwError) as e:
                await none.connect()
            self.assertEqual(e.exception.code, "connect_failed")
            self.assertEqual(e.exception.detail.count("Connect call failed"), 2, e.exception.detail)
        finally:
            await b.close()

    async def test_queue_is_bounded(self) -> None:
        c = Client(port=self.srv.port, queue_size=2, backoff_min=10)
        lost = Events(c, "disconnect")
        await c.connect()
        (await self.srv.accept(0)).writer.transport.abort()
        await lost.first(1)
        c.send(1)
        c.send(2)
        with self.assertRaises(SamgwError) as e:
            c.send(3)
        self.assertEqual(e.exception.code, "queue_full")
        await c.disconnect()
        with self.assertRaises(SamgwError) as e:
            c.send(4)
        self.assertEqual(e.exception.code, "client_closed")

    async def test_request_error_reply_and_unique_ids(self) -> None:
        c = Client(port=self.srv.port)
        await c.connect()
        peer = await self.srv.accept(0)
        ok = asyncio.create_task(c.request({"n": 1}, route="calc"))
        bad = asyncio.create_task(c.request({"n": 2}))
        m1, m2 = await peer.next("data"), await peer.next("data")
        self.assertEqual(m1["route"], "calc")
        peer.write(frame({"type": "error", "id": m2["id"], "payload": {"code": "forbidden", "message": "no"}})
                   + frame({"type": "data", "id": m1["id"], "payload": 42}))
        self.assertEqual((await ok).payload, 42)
        with self.assertRaises(SamgwError) as e:
            await bad
        self.assertEqual((e.exception.code, e.exception.detail), ("forbidden", "no"))
        ids = {c.send(i) for i in range(10_000)}
        self.assertEqual(len(ids), 10_000)
        other = Client(port=self.srv.port)  # never connected: its send is queued
        self.assertNotEqual(other.send(0).split("-")[0], c.send(0).split("-")[0])
        await other.disconnect()
        await disconnect_via(c, peer)

    async def test_request_timeout_and_disconnect_fails_waiters(self) -> None:
        c = Client(port=self.srv.port)
        await c.connect()
        peer = await self.srv.accept(0)
        with self.assertRaises(SamgwError) as e:
            await c.request(1, timeout=0.05)
        self.assertEqual(e.exception.code, "timeout")
        pending = asyncio.create_task(c.request(2))
        await peer.next("data")
        close = await disconnect_via(c, peer, "bye")
        self.assertEqual(close["payload"], {"reason": "bye"})
        with self.assertRaises(SamgwError) as e:
            await pending
        self.assertEqual(e.exception.code, "client_closed")

    async def test_signing_covers_the_exact_bytes_sent(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        c = Client(port=self.srv.port, sign_key=pem)
        await c.connect()
        peer = await self.srv.accept(0)
        c.send({"text": "héllo", "n": [1, 2.5], "big": 2**70}, route="chat")
        c.send("no route")
        lines = [line for line in await peer.raw_frames(2)]
        for line in lines:
            m = json.loads(line)
            text = line[line.index('"payload":') + 10:line.index(',"timestamp":')]
            key.public_key().verify(base64.b64decode(m["sig"]),
                                    signed_bytes(m["id"], m["timestamp"], m.get("route") or "", text))
        self.assertIn('"big":1180591620717411303424', lines[0], "integers go out exactly")
        with self.assertRaises((TypeError, ValueError)):
            Client(sign_key=b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        await disconnect_via(c, peer)

    async def test_refused_first_connection(self) -> None:
        port = self.srv.port
        await self.srv.close()
        self.srv = await FakeServer.start()
        c = Client(port=port)
        with self.assertRaises(SamgwError) as e:
            await c.connect()
        self.assertEqual(e.exception.code, "connect_failed")


if __name__ == "__main__":
    unittest.main()
