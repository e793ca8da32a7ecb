"""Runs internal/conformance/steps.json with the Python client against real
samgw serve processes, as the Go and TypeScript suites do."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import unittest
from pathlib import Path
from typing import Any

from samgw import Client, Job, SamgwError, SyncClient, tls_context
from samgw.message import Message

from .harness import REPO_ROOT, WAIT, Harness

STEPS = json.loads((REPO_ROOT / "internal/conformance/steps.json").read_text("utf-8"))["steps"]


class Runner:
    """The state the steps share: the client, its inbox, its connection."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.client: Client | None = None
        self.inbox: list[Message] = []
        self.up = False
        self.last_seq = 0
        self.attempts: dict[str, int] = {}  # jobs handled, by id
        self.jobs_done: set[str] = set()
        self.offsets: dict[str, int] = {}  # the last offset seen, by topic
        self.renewals: dict[str, list[bool]] = {}  # recovered, of each renewal answered, by topic
        self.changed = asyncio.Event()

    def _notify(self) -> None:
        self.changed.set()

    async def until(self, cond: Any, what: str) -> None:
        async def wait() -> None:
            while not cond():
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(wait(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"waiting for {what}") from None

    async def run(self, s: dict[str, Any]) -> None:
        step = s["step"]
        c = self.client
        if step == "connect":
            await self.connect(s)
        elif step == "request":
            assert c is not None
            if "expect_error" in s:
                try:
                    await c.request(s.get("payload"), route=s.get("route"))
                except SamgwError as e:
                    assert e.code == s["expect_error"], f"code {e.code}, want {s['expect_error']}"
                else:
                    raise AssertionError(f"no error, want {s['expect_error']}")
            else:
                reply = await c.request(s.get("payload"), route=s.get("route"))
                assert reply.payload == s["expect_reply"], f"reply {reply.payload!r}, want {s['expect_reply']!r}"
        elif step == "send":
            assert c is not None
            c.send(s["payload"], route=s.get("route"))
        elif step == "ping":
            assert c is not None
            rtt = await c.ping()
            assert 0 <= rtt < WAIT, rtt
        elif step == "expect_data":
            want = s["payloads"]
            await self.until(lambda: len(self.inbox) >= len(want), f"{len(want)} data frames")
            got, self.inbox = self.inbox[:len(want)], self.inbox[len(want):]
            for i, m in enumerate(got):
                if s.get("route"):
                    assert m.route == s["route"], m
                assert m.payload == want[i], f"data frame {i + 1}: {m.payload!r}, want {want[i]!r}"
                if s.get("topic"):
                    last = self.offsets.get(s["topic"], 0)
                    assert m.topic == s["topic"] and m.offset and m.offset > last, f"data frame {i + 1}: topic {m.topic} offset {m.offset}, want {s['topic']} after {last}"
                    self.offsets[s["topic"]] = m.offset
                if "ids" in s:
                    assert m.id == s["ids"][i] and m.seq, f"data frame {i + 1}: id {m.id!r} seq {m.seq}, want mailbox message {s['ids'][i]!r}"
        elif step == "deliver":
            assert c is not None
            body = {"to": s["to"], "id": s["id"], "body": s.get("payload")}
            if "expect_error" in s:
                try:
                    await c.request(body, route="leave")
                except SamgwError as e:
                    assert e.code == s["expect_error"], f"code {e.code}, want {s['expect_error']}"
                else:
                    raise AssertionError(f"no error, want {s['expect_error']}")
            else:
                seq = (await c.request(body, route="leave")).payload
                assert isinstance(seq, int) and not isinstance(seq, bool) and seq > 0, f"deliver answered {seq!r}, want a seq"
        elif step == "expect_jobs":
            await self.until(lambda: all(i in self.jobs_done for i in s["ids"]), f"jobs {s['ids']}")
            for i, n in s.get("attempts", {}).items():
                assert self.attempts.get(i) == n, f"job {i} handled {self.attempts.get(i)} times, want {n}"
        elif step == "subscribe":
            assert c is not None
            await c.subscribe(s["topic"])
        elif step == "expect_resubscribed":
            await self.until(lambda: self.renewals.get(s["topic"]), f"the renewal of {s['topic']}")
            got = self.renewals[s["topic"]].pop(0)
            if "recovered" in s:
                assert got == s["recovered"], f"renewal of {s['topic']}: recovered {got}, want {s['recovered']}"
        elif step == "ack_last":
            assert c is not None
            c.ack(self.last_seq)
        elif step == "stop_server":
            await self.h.command(stop=s["server"])
        elif step == "start_server":
            await self.h.command(start=s["server"])
        elif step == "wait_disconnected":
            await self.until(lambda: not self.up, "the client to notice the loss")
        elif step == "wait_connected":
            await self.until(lambda: self.up, "the client to reconnect")
        elif step == "disconnect":
            assert c is not None
            await c.disconnect(s.get("reason", "done"))
            assert not c.is_connected()
            self.client = None
        else:
            raise AssertionError(f"unknown step {step}")

    async def connect(self, s: dict[str, Any]) -> None:
        fx = self.h.fixture
        self.inbox, self.up = [], False
        host, port = self.h.addr(s["server"])
        opts: dict[str, Any] = {"backoff_min": 0.05, "backoff_max": 0.5}
        if "token" in s:
            opts["token"] = fx["tokens"][s["token"]]
        if "cert" in s:
            cert = fx["certs"][s["cert"]]
            opts["ssl"] = tls_context(ca=fx["ca"], cert=cert["cert"], key=cert["key"])
        if "sign" in s:
            opts["sign_key"] = Path(fx["sign_keys"][s["sign"]]).read_bytes()
        if s.get("manual_ack"):
            opts["manual_ack"] = True
        if s.get("compress"):
            opts["compress"] = True
        c = Client(host, port, **opts)
        self.attempts, self.jobs_done = {}, set()
        if s.get("worker"):
            @c.on_job
            def job(j: Job) -> None:
                n = self.attempts[j.id] = self.attempts.get(j.id, 0) + 1
                if isinstance(j.payload, dict) and j.payload.get("fail_once") and n == 1:
                    raise RuntimeError("fail_once")
                self.jobs_done.add(j.id)
                self._notify()

        self.offsets, self.renewals = {}, {}

        @c.on("resubscribed")
        def resubscribed(topic: str, reply: Message | None, err: SamgwError | None) -> None:
            ok = err is None and reply is not None and isinstance(reply.payload, dict) and reply.payload.get("recovered") is True
            self.renewals.setdefault(topic, []).append(ok)
            self._notify()

        @c.on("data")
        def data(m: Message) -> None:
            self.inbox.append(m)
            if m.seq:
                self.last_seq = m.seq
            self._notify()

        @c.on("connect")
        def connected() -> None:
            self.up = True
            self._notify()

        @c.on("disconnect")
        def disconnected(_: str) -> None:
            self.up = False
            self._notify()

        if "expect_error" in s:
            try:
                await c.connect()
            except SamgwError as e:
                assert e.code == s["expect_error"], f"code {e.code}, want {s['expect_error']}"
                return
            raise AssertionError(f"connected, want {s['expect_error']}")
        await c.connect()
        self.client = c
        if "expect_pending" in s:
            assert (c.resumed, c.pending) == (True, s["expect_pending"]), f"mailbox {c.resumed}, {c.pending}; want pending {s['expect_pending']}"


class ConformanceTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.harness = await Harness.start()

    async def asyncTearDown(self) -> None:
        await self.harness.stop()

    async def test_steps(self) -> None:
        r = Runner(self.harness)
        try:
            for i, s in enumerate(STEPS, 1):
                try:
                    await r.run(s)
                except Exception as e:
                    raise AssertionError(f"step {i} {s['step']}: {e}") from e
        finally:
            if r.client is not None:
                await r.client.disconnect("test over")

    async def test_sync_client(self) -> None:
        host, port = self.harness.addr("plain")
        token = self.harness.fixture["tokens"]["agent-a"]

        def blocking() -> tuple[Any, float, str]:
            with SyncClient(host, port, token=token) as c:
                reply = c.request({"name": "John"})
                rtt = c.ping()
                try:
                    c.request(1, route="missing")
                except SamgwError as e:
                    code = e.code
                return reply.payload, rtt, code
        payload, rtt, code = await asyncio.to_thread(blocking)
        self.assertEqual(payload, {"name": "John"})
        self.assertGreaterEqual(rtt, 0)
        self.assertEqual(code, "no_route")

    async def test_demo(self) -> None:
        # As the README says to run it: `python3 examples/demo.py` from
        # clients/python, with nothing installed and no PYTHONPATH.
        env = dict(os.environ, SAMGW_ADDR=self.harness.fixture["servers"]["plain"],
                   SAMGW_TOKEN=self.harness.fixture["tokens"]["agent-a"], SAMGW_TIME_SCALE="0.01")
        env.pop("PYTHONPATH", None)
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "examples/demo.py"], env=env,
                                      cwd=Path(__file__).resolve().parents[1],
                                      capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.strip().split("\n")
        self.assertEqual(lines[:3], ["Connected to server",
                                     "Data received: {'name': 'John', 'age': 30, 'email': 'john@example.com'}",
                                     "Pong received"])
        self.assertRegex(lines[3], r"^Data received: \{'message': 'Hello again!', 'timestamp': \d+\}$")
        self.assertEqual(lines[4:], ["Disconnecting after 30 seconds...", "Disconnected from server"])


if __name__ == "__main__":
    unittest.main()
