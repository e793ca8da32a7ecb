"""Every failure the client reports is a SamgwError with a code."""

from __future__ import annotations


class SamgwError(Exception):
    """A failure with a code: the server's (``unauthorized``, ``no_route``,
    ``bad_signature``, ... from its ``error`` frames) or one of the client's
    own below."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


# Codes of failures the client detects itself.
CONNECTION_LOST = "connection_lost"  # written, then the connection broke: at most once
CLIENT_CLOSED = "client_closed"  # disconnect() was called, or the client stopped for good
QUEUE_FULL = "queue_full"  # queue_size frames already wait for a connection
TIMEOUT = "timeout"  # no answer within the timeout
CONNECT_FAILED = "connect_failed"  # the first connection could not be made
INVALID_JSON = "invalid_json"  # the server sent a frame that is not JSON or not UTF-8
INVALID_MESSAGE = "invalid_message"  # the server sent JSON that is not a message
FRAME_TOO_LARGE = "frame_too_large"  # the server sent a frame over max_frame_size
NOT_SUBSCRIBED = "not_subscribed"  # subscribe()'s handler did not answer "subscribed": true
