"""Work daphne's HTTP layer does that Gatehouse never uses, switched off.

Twisted's `Request` parses every POST body with a Content-Type into `request.args`: it builds an
`email.message.EmailMessage` just to read the media type (5.9% of the server's CPU on a `/v1`
call, py-spy, 2026-12-07) and decodes url-encoded and multipart forms. daphne never reads
`args`; it hands the raw body to the ASGI application, where Django parses forms itself. The
request factory daphne installs is therefore given `parsePOSTFormSubmission=False`, Twisted's
documented switch for this.

autobahn, under daphne's WebSockets, logs every frame it writes and every read at debug level,
and builds that line's arguments first, whether or not debug is on: the method's qualified
name and two values, each coloured with `click.style` — about 5 µs per frame sent (measured
with timeit; py-spy put it at 5% of the server's CPU while streaming a chat answer). Those
arguments are now rendered only if a line is actually formatted (`_Deferred`), so a debug log
still reads the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def apply() -> None:
    """Idempotent; a no-op unless daphne is the server (it is imported before the app is)."""
    _formless_requests()
    _deferred_frame_logs()


def _formless_requests() -> None:
    module = sys.modules.get("daphne.http_protocol")
    if module is None or getattr(module.WebRequest, "_gatehouse_formless", False):
        return
    base = module.WebRequest

    class FormlessWebRequest(base):  # type: ignore[misc, valid-type]
        _gatehouse_formless = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("parsePOSTFormSubmission", False)
            super().__init__(*args, **kwargs)

    # HTTPFactory.buildProtocol reads the module global for every new connection.
    module.WebRequest = FormlessWebRequest


class _Deferred:
    """A log argument rendered only when the line is formatted."""

    __slots__ = ("_args", "_kwargs", "_render")

    def __init__(self, render: Callable[..., str], args: tuple, kwargs: dict[str, Any]) -> None:
        self._render, self._args, self._kwargs = render, args, kwargs

    def __str__(self) -> str:
        return self._render(*self._args, **self._kwargs)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    __repr__ = __str__


def _deferring(render: Callable[..., str]) -> Callable[..., _Deferred]:
    def defer(*args: Any, **kwargs: Any) -> _Deferred:
        return _Deferred(render, args, kwargs)

    defer._gatehouse_deferred = True  # type: ignore[attr-defined]
    return defer


def _deferred_frame_logs() -> None:
    # The two autobahn modules daphne's sockets run through; each imported the helpers by name.
    for name in ("autobahn.websocket.protocol", "autobahn.twisted.websocket"):
        module = sys.modules.get(name)
        if module is None:
            continue
        for helper in ("hltype", "hlval"):
            current = getattr(module, helper, None)
            if current is not None and not getattr(current, "_gatehouse_deferred", False):
                setattr(module, helper, _deferring(current))
