"""Ed25519 signing of data frames (needs the cryptography package)."""

from __future__ import annotations

import base64
from typing import Any


def signed_bytes(id: str, timestamp: int, route: str, payload_text: str) -> bytes:
    """The exact bytes a data frame's sig covers:
    "samgw-sig-v1\\n" + id + "\\n" + timestamp + "\\n" + route + "\\n" + payload,
    with the payload's JSON text as it appears in the frame."""
    return f"samgw-sig-v1\n{id}\n{timestamp}\n{route}\n{payload_text}".encode("utf-8")


def load_sign_key(key: Any) -> Any:
    """Returns an Ed25519PrivateKey from a PKCS#8 PEM (str or bytes, what
    ``samgw keygen`` writes) or an Ed25519PrivateKey."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, str):
        key = key.encode()
    k = load_pem_private_key(key, password=None)
    if not isinstance(k, Ed25519PrivateKey):
        raise TypeError("sign_key must be an Ed25519 private key (PKCS#8 PEM from samgw keygen)")
    return k


def sign(key: Any, id: str, timestamp: int, route: str, payload_text: str) -> str:
    """The base64 signature of a frame's signed bytes."""
    return base64.b64encode(key.sign(signed_bytes(id, timestamp, route, payload_text))).decode()
