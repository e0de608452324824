"""Twisted's asyncio reactor, writing to a connected socket as soon as the event loop is free.

Every `transport.write` in Twisted (an HTTP response, an SSE event, a WebSocket frame of a chat
answer) ends in `reactor.addWriter`: the asyncio reactor registers the socket with the event
loop (`epoll_ctl`), waits for the next poll to say it is writable, sends, and unregisters it
(`epoll_ctl` again) once the buffer is empty. A socket whose send buffer is not full is
writable, so that round costs two system calls, one poll and Twisted's per-event wrappers for
nothing. Each token frame of an answer whose chunks arrive spaced out paid it in full.

`OptimisticWriteReactor` sends first: a connected TCP (or Unix) connection that asks to write is
given a `doWrite` at the end of the loop's current round (`call_soon`), so everything written in
that round still goes out in one `send`, in order. Only if that `doWrite` leaves data behind (the
peer reads slowly, the send buffer is full) is the socket registered for writability, the way
the stock reactor does it from the start. `doWrite` runs exactly as the reactor would run it on a
writable socket (through `_readOrWrite`, whose error handling disconnects), and sending on a
socket that is not writable is harmless: Twisted treats `EWOULDBLOCK` as "0 bytes written".
Anything else (a client still connecting, a pipe) is registered as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class OptimisticWriteReactor(AsyncioSelectorReactor):
    def __init__(self, eventloop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(eventloop)
        # Writers given a first `doWrite` soon, each with whether it still wants to write.
        self._soon: dict[Any, bool] = {}

    def addWriter(self, writer: Any) -> None:
        if writer in self._soon:
            self._soon[writer] = True
            return
        if writer in self._writers or not _sends_directly(writer):
            super().addWriter(writer)
            return
        self._soon[writer] = True
        self._asyncioEventloop.call_soon(self._write_soon, writer)

    def removeWriter(self, writer: Any) -> None:
        if writer in self._soon:
            self._soon[writer] = False
            return
        super().removeWriter(writer)

    def getWriters(self) -> list[Any]:
        return [w for w, wants in self._soon.items() if wants] + super().getWriters()

    def _write_soon(self, writer: Any) -> None:
        if not self._soon.get(writer):
            self._soon.pop(writer, None)  # it stopped writing (or disconnected) meanwhile
            return
        # `doWrite` calls `stopWriting` (removeWriter) once its buffer is empty. Not wrapped in
        # `callWithLogger` as a poll's event is: that only prefixes legacy log lines, and
        # `_readOrWrite` reports a failure through its own logger.
        self._readOrWrite(writer, False)
        if self._soon.pop(writer, False) and writer.fileno() != -1:
            super().addWriter(writer)  # data left behind: wait until the socket drains


def _sends_directly(writer: Any) -> bool:
    return isinstance(writer, tcp.Connection) and bool(writer.connected)


def install(eventloop: asyncio.AbstractEventLoop) -> OptimisticWriteReactor:
    """Make it Twisted's global reactor; before anything imports `twisted.internet.reactor`."""
    from twisted.internet.main import installReactor

    reactor = OptimisticWriteReactor(eventloop)
    installReactor(reactor)
    return reactor
