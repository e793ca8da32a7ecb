"""Line framing of the samgw protocol."""

from __future__ import annotations

from collections.abc import Callable

from .errors import FRAME_TOO_LARGE, SamgwError


class FrameReader:
    """Splits a byte stream into frames at b"\\n" (a b"\\r\\n" ending is
    accepted, empty lines are skipped), however the network split or
    coalesced the bytes. It never holds more than max_frame_size bytes of an
    unfinished frame: push raises frame_too_large instead, after which the
    stream cannot be trusted."""

    def __init__(self, max_frame_size: int) -> None:
        self._max = max_frame_size
        self._buf = bytearray()

    def push(self, chunk: bytes) -> list[bytes]:
        """Takes the next chunk and returns the frames it completed."""
        return self.push_until(chunk, _never)[0]

    def push_until(self, chunk: bytes, stop: Callable[[bytes], bool]) -> tuple[list[bytes], bytes | None]:
        """Like push, but stops after the first frame stop() is true of (it
        is the last one returned) and returns the rest of the chunk after
        it, unread: the stream changes its encoding there. The rest is None
        when no frame stopped it."""
        frames: list[bytes] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            frame = self._complete(chunk, start, nl)
            start = nl + 1
            if frame:
                frames.append(frame)
                if stop(frame):
                    return frames, chunk[start:]
        self._keep(chunk, start)
        return frames, None

    def _complete(self, chunk: bytes, start: int, nl: int) -> bytes:
        if self._buf:
            self._buf += chunk[start:nl]
            frame = bytes(self._buf)
            self._buf.clear()
        else:
            frame = chunk[start:nl]
        if frame.endswith(b"\r"):
            frame = frame[:-1]
        if len(frame) > self._max:
            raise _too_large(self._max)
        return frame

    def _keep(self, chunk: bytes, start: int) -> None:
        rest = len(chunk) - start
        if rest:
            if len(self._buf) + rest > self._max + 1:  # +1: a "\r" may end it
                raise _too_large(self._max)
            self._buf += chunk[start:]


def _never(frame: bytes) -> bool:
    return False


def _too_large(limit: int) -> SamgwError:
    return SamgwError(FRAME_TOO_LARGE, f"the server sent a frame longer than {limit} bytes")
