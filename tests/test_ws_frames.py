"""`config.ws_frames`: the frames written straight to daphne's transport are RFC 6455 text frames
— byte for byte what the `websockets` library serialises, and read back by its parser — on
daphne's own protocol class; and the writer steps aside whenever the ASGI way must send."""

from __future__ import annotations

import functools

import pytest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from config.ws_frames import text_writer


def _open_protocol() -> WebSocketProtocol:
    """daphne's protocol class in the open state, with autobahn's server defaults, writing to a
    transport that keeps what it is given."""
    protocol = WebSocketProtocol()
    protocol._perMessageCompress = None
    protocol.maskServerFrames = False
    protocol.autoFragmentSize = 0
    protocol.maxMessagePayloadSize = 0
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol.transport = StringTransport()
    return protocol


def _daphne_send(protocol: WebSocketProtocol) -> functools.partial:
    # What daphne hands an application as `send` (daphne.server.Server.create_application).
    return functools.partial(Server.__new__(Server).handle_reply, protocol)


def _parsed(data: bytes) -> list[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_frame_is_the_rfc_6455_text_frame_for_every_length_form(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8: the length is in bytes
    protocol = _open_protocol()
    assert text_writer(_daphne_send(protocol))(text) is True
    written = protocol.transport.value()
    # The `websockets` library's own serialisation of an unmasked, final text frame.
    assert written == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    [frame] = _parsed(written)
    assert (frame.opcode, frame.fin, frame.data.decode()) == (Opcode.TEXT, True, text)


def test_frames_keep_their_order() -> None:
    protocol = _open_protocol()
    write = text_writer(_daphne_send(protocol))
    for text in ("one", "two" * 100, "three"):
        assert write(text)
    frames = _parsed(protocol.transport.value())
    assert [f.data.decode() for f in frames] == ["one", "two" * 100, "three"]


def test_the_asgi_way_sends_when_the_socket_is_not_open_or_compresses() -> None:
    protocol = _open_protocol()
    write = text_writer(_daphne_send(protocol))
    protocol.state = WebSocketProtocol.STATE_CLOSING
    assert write("late") is False
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol._perMessageCompress = object()  # permessage-deflate negotiated
    assert write("squeezed") is False
    protocol._perMessageCompress = None
    protocol.maxMessagePayloadSize = 10
    assert write("x" * 11) is False
    assert protocol.transport.value() == b""


def test_no_writer_for_a_send_that_is_not_daphnes() -> None:
    async def send(message: dict) -> None:
        return None

    assert text_writer(send) is None
    protocol = _open_protocol()
    protocol.autoFragmentSize = 1000
    assert text_writer(_daphne_send(protocol)) is None
