"""samgw: the Python client of the samgw messaging gateway.

Client is the asyncio client; SyncClient wraps it for blocking code.
"""

from .client import Client, Job, tls_context
from .errors import SamgwError
from .framing import FrameReader
from .message import Message
from .sign import signed_bytes
from .sync import SyncClient

__all__ = ["Client", "Job", "SyncClient", "SamgwError", "Message", "FrameReader", "signed_bytes", "tls_context"]
