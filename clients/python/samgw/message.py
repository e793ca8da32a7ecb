"""Messages of the samgw protocol and their encoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import INVALID_JSON, INVALID_MESSAGE, SamgwError

TYPES = frozenset({"data", "ping", "pong", "keepalive", "close", "error", "auth", "ack", "nack", "progress"})


@dataclass
class Message:
    """One frame as received. A reply carries its request's id; server
    pushes have ids ``s-N``. timestamp is the sender's clock in Unix ms."""

    type: str
    payload: Any = None
    id: str | None = None
    timestamp: int | None = None
    route: str | None = None
    sig: str | None = None
    seq: int | None = None
    """A message from the identity's mailbox: its sequence number, to ack."""
    job: str | None = None
    """A job of a work queue handed to this worker (route: the queue): its id."""
    topic: str | None = None
    """A publication of a topic with history: its topic, offset (per topic,
    increasing) and the history's epoch."""
    offset: int | None = None
    epoch: str | None = None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a frame may have (the message
object is level 1), as the server's."""


def nested_deeper_than(frame: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays and objects deeper than limit,
    outside strings. A frame with fewer brackets than that cannot, so the
    scan runs only for the rare frame that might: json.loads of a frame
    nested 100,000 deep raises RecursionError."""
    if frame.count(b"[") + frame.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for b in frame:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x5D, 0x7D):
            depth -= 1
    return False


def decode(frame: bytes) -> Message:
    """Parses one frame; raises SamgwError invalid_json or invalid_message."""
    if nested_deeper_than(frame, MAX_DEPTH):
        raise SamgwError(INVALID_MESSAGE, f"the server sent a frame nested deeper than {MAX_DEPTH} levels")
    try:
        v = json.loads(frame.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SamgwError(INVALID_JSON, f"the server sent a frame that is not JSON: {e}") from None
    if not isinstance(v, dict):
        raise SamgwError(INVALID_MESSAGE, "the server sent a frame that is not a JSON object")
    t = v.get("type")
    if not isinstance(t, str):
        raise SamgwError(INVALID_MESSAGE, '"type" missing or not a string')
    if t not in TYPES:
        raise SamgwError(INVALID_MESSAGE, f"unknown message type {t!r}")
    for k in ("id", "route", "sig", "job", "topic", "epoch"):
        if v.get(k) is not None and not isinstance(v[k], str):
            raise SamgwError(INVALID_MESSAGE, f'"{k}" is not a string')
    ts = v.get("timestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
        raise SamgwError(INVALID_MESSAGE, '"timestamp" is not a number')
    for k in ("seq", "offset"):
        n = v.get(k)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise SamgwError(INVALID_MESSAGE, f'"{k}" is not a non-negative integer')
    return Message(type=t, payload=v.get("payload"), id=v.get("id"), timestamp=ts, route=v.get("route"), sig=v.get("sig"),
                   seq=v.get("seq") or None, job=v.get("job"), topic=v.get("topic"), offset=v.get("offset") or None,
                   epoch=v.get("epoch"))


def payload_text(payload: Any) -> str:
    """The compact JSON text of a payload, exactly as it goes on the wire."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_frame(type: str, id: str, timestamp: int, text: str | None = None,
                 route: str | None = None, sig: str | None = None) -> bytes:
    """Writes a frame around the payload's text verbatim, so the bytes the
    server sees are the bytes that were signed."""
    parts = ['{"type":', json.dumps(type)]
    if text is not None:
        parts += [',"payload":', text]
    parts += [',"timestamp":', str(timestamp), ',"id":', json.dumps(id, ensure_ascii=False)]
    if route:
        parts += [',"route":', json.dumps(route)]
    if sig:
        parts += [',"sig":', json.dumps(sig)]
    parts.append("}\n")
    return "".join(parts).encode("utf-8")
