"""A chat socket's text frames written straight to daphne's transport.

Sent the ASGI way, each token of an answer goes through daphne's `handle_reply` (the connection
looked up, the message type dispatched), then autobahn's `sendMessage` and `sendFrame` (type
asserts, traffic counters, compression and fragmentation checks, a header built bit by bit):
several µs of Python per frame, for a header of two bytes. Where a socket's frames need none of
that — open, no permessage-deflate, no fragmentation, no masking of server frames, under the
payload limit — `text_writer` builds the same bytes (RFC 6455 §5.2: FIN, opcode 1, the payload
length, the UTF-8 payload) and writes them to the same transport, in the same order as every
other send, since both write synchronously. Anything else answers False and the caller sends the
ASGI way, so a socket that is closing or compressing is served exactly as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# FIN + opcode 1 (text), then the payload length in 7 bits, or 126 + 16 bits, or 127 + 64 bits.
_SHORT = [bytes((0x81, n)) for n in range(126)]
_MEDIUM = b"\x81\x7e"
_LONG = b"\x81\x7f"


def text_writer(send: Any) -> Callable[[str], bool] | None:
    """A writer for the socket whose ASGI `send` this is, or None when `send` is not daphne's
    own. The writer answers whether it wrote the frame; on False, send it the ASGI way."""
    protocol = _daphne_protocol(send)
    if protocol is None:
        return None
    if protocol.maskServerFrames or protocol.autoFragmentSize:
        return None  # options daphne leaves off; honoured by the ASGI way if ever set
    open_state = protocol.STATE_OPEN

    def write(text: str) -> bool:
        if protocol.state != open_state or protocol._perMessageCompress is not None:
            return False
        payload = text.encode()
        size = len(payload)
        limit = protocol.maxMessagePayloadSize
        if 0 < limit < size:
            return False  # autobahn refuses it, and says so
        if size < 126:
            head = _SHORT[size]
        elif size < 65536:
            head = _MEDIUM + size.to_bytes(2, "big")
        else:
            head = _LONG + size.to_bytes(8, "big")
        protocol.transport.write(head + payload)
        return True

    return write


def _daphne_protocol(send: Any) -> Any | None:
    # daphne hands each application `functools.partial(server.handle_reply, protocol)`.
    from daphne.ws_protocol import WebSocketProtocol

    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    if getattr(send.func, "__name__", "") != "handle_reply":
        return None
    return protocol if isinstance(protocol, WebSocketProtocol) else None
