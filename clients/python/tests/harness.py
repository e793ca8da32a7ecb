"""Test helpers: the Go conformance harness (real samgw serve processes) and
small fake servers for what a real server never does."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT = 15.0  # bound of every wait in the tests


class Harness:
    """Runs `go run ./internal/conformance/cmd/harness` and talks to it."""

    def __init__(self, proc: asyncio.subprocess.Process, fixture: dict[str, Any]) -> None:
        self.proc = proc
        self.fixture = fixture

    @classmethod
    async def start(cls) -> Harness:
        proc = await asyncio.create_subprocess_exec(
            "go", "run", "./internal/conformance/cmd/harness", cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=os.environ.copy())
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if not line:
            await proc.wait()
            raise RuntimeError("the harness exited before printing its fixture")
        return cls(proc, json.loads(line))

    def addr(self, server: str) -> tuple[str, int]:
        host, _, port = self.fixture["servers"][server].rpartition(":")
        return host, int(port)

    async def command(self, **cmd: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the harness exited")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"harness: {reply['error']}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), 30)


class FakeServer:
    """Accepts connections and hands them to the test; like samgw it hangs
    up after a client's close frame when auto_close is set."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    async def start(cls) -> FakeServer:
        fake = cls()
        fake.server = await asyncio.start_server(fake._accepted, "127.0.0.1", 0)
        fake.port = fake.server.sockets[0].getsockname()[1]
        return fake

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append((reader, writer))
        self._changed.set()

    async def accept(self, n: int) -> Peer:
        async def wait() -> None:
            while len(self.conns) <= n:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), WAIT)
        return Peer(*self.conns[n])

    async def close(self) -> None:
        assert self.server is not None
        for _, w in self.conns:
            w.close()
        self.server.close()
        await self.server.wait_closed()


class Peer:
    """The server side of one connection: reads the client's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.skipped: list[dict[str, Any]] = []

    def write(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def next(self, *types: str) -> dict[str, Any]:
        """The next frame whose type is in types (others are kept aside)."""
        for i, f in enumerate(self.skipped):
            if not types or f["type"] in types:
                return self.skipped.pop(i)

        async def read() -> dict[str, Any]:
            while True:
                line = await self.reader.readline()
                if not line:
                    raise EOFError("the client hung up")
                f = json.loads(line)
                if not types or f["type"] in types:
                    return f
                self.skipped.append(f)
        return await asyncio.wait_for(read(), WAIT)

    async def raw_frames(self, count: int) -> list[str]:
        async def read() -> list[str]:
            return [(await self.reader.readline()).decode() for _ in range(count)]
        return await asyncio.wait_for(read(), WAIT)


def frame(m: dict[str, Any]) -> bytes:
    return (json.dumps(m) + "\n").encode()
