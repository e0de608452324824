"""config.reactor: Twisted connections write without waiting for a poll, and still deliver every
byte in order when the socket's buffer fills up; anything else is registered as Twisted does.

Real sockets and a real reactor on its own event loop (not installed as the global reactor)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol

from config.reactor import OptimisticWriteReactor


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.reactor = OptimisticWriteReactor(self.loop)
        self.registered: list[int] = []  # fds handed to the loop's add_writer
        add_writer = self.loop.add_writer

        def spy(fd, callback, *args):
            self.registered.append(fd)
            return add_writer(fd, callback, *args)

        self.loop.add_writer = spy  # type: ignore[method-assign]

    def run_until(self, condition, timeout: float = 5.0) -> None:
        async def wait() -> None:
            async with asyncio.timeout(timeout):
                while not condition():
                    await asyncio.sleep(0.001)

        self.loop.run_until_complete(wait())

    def connection(self, sock: socket.socket, *, connected: bool = True) -> tcp.Connection:
        conn = tcp.Connection(sock, Protocol(), self.reactor)
        conn.connected = int(connected)
        return conn


@pytest.fixture
def loop() -> Iterator[_Loop]:
    state = _Loop()
    yield state
    state.loop.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def _read_all(peer: socket.socket, size: int) -> bytes:
    received = bytearray()
    peer.settimeout(5)
    while len(received) < size:
        chunk = peer.recv(65536)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_writes_of_one_round_go_out_together_without_a_poll(loop: _Loop, pair) -> None:
    ours, peer = pair
    conn = loop.connection(ours)
    for part in (b"first ", b"second ", b"third"):
        conn.write(part)
    loop.run_until(lambda: not loop.reactor.getWriters())
    assert _read_all(peer, 18) == b"first second third"
    assert loop.registered == []  # the socket was never registered for writability


def test_nothing_leaves_before_the_loop_runs(loop: _Loop, pair) -> None:
    ours, peer = pair
    conn = loop.connection(ours)
    conn.write(b"later")
    assert loop.reactor.getWriters() == [conn]
    with pytest.raises(BlockingIOError):
        peer.recv(100, socket.MSG_DONTWAIT)
    loop.run_until(lambda: not loop.reactor.getWriters())
    assert _read_all(peer, 5) == b"later"


def test_a_write_larger_than_the_buffer_arrives_whole_and_in_order(loop: _Loop, pair) -> None:
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    conn = loop.connection(ours)
    payload = bytes(range(256)) * 16384  # 4 MiB, far beyond the socket's buffers
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(peer, len(payload))))
    conn.write(payload[:1000])
    conn.write(payload[1000:])
    reader.start()
    loop.run_until(lambda: not loop.reactor.getWriters(), timeout=20)
    reader.join(10)
    assert received == [payload]
    # The first send could not take it all: the rest waited for the socket to drain.
    assert loop.registered == [ours.fileno()]


def test_a_connection_that_stops_writing_before_the_round_sends_nothing(loop: _Loop, pair) -> None:
    ours, peer = pair
    conn = loop.connection(ours)
    conn.write(b"never")
    conn.stopWriting()
    assert loop.reactor.getWriters() == []
    loop.loop.run_until_complete(asyncio.sleep(0.01))
    with pytest.raises(BlockingIOError):
        peer.recv(100, socket.MSG_DONTWAIT)


def test_a_connection_not_yet_connected_is_registered_as_twisted_does(loop: _Loop, pair) -> None:
    ours, _peer = pair
    conn = loop.connection(ours, connected=False)
    loop.reactor.addWriter(conn)
    assert loop.registered == [ours.fileno()]
    assert loop.reactor.getWriters() == [conn]
    loop.reactor.removeWriter(conn)
    assert loop.reactor.getWriters() == []


def test_a_lost_peer_disconnects_the_connection(loop: _Loop, pair) -> None:
    ours, peer = pair
    lost: list[object] = []

    class Watcher(Protocol):
        def connectionLost(self, reason) -> None:
            lost.append(reason)

    conn = tcp.Connection(ours, Watcher(), loop.reactor)
    conn.connected = 1
    peer.close()
    conn.write(b"into the void")
    loop.run_until(lambda: bool(lost))
    assert loop.reactor.getWriters() == []
    assert not conn.connected
