"""autobahn's per-frame debug-log arguments are rendered only when a line is formatted
(config.daphne_tuning), and then read exactly as before."""

from __future__ import annotations

import autobahn.twisted.websocket
import autobahn.websocket.protocol
import daphne.ws_protocol  # noqa: F401  (daphne's sockets: what apply() tunes)
from autobahn import util

from config import daphne_tuning


def test_a_deferred_argument_renders_only_when_formatted() -> None:
    calls = []

    def render(value: object, *, color: str) -> str:
        calls.append(value)
        return f"{color}:{value}"

    argument = daphne_tuning._deferring(render)(42, color="white")
    assert calls == []
    assert f"{argument} and {argument!s}" == "white:42 and white:42"
    assert calls == [42, 42]


def test_frame_logs_read_the_same_after_apply() -> None:
    daphne_tuning.apply()
    daphne_tuning.apply()  # idempotent: not deferred twice
    method = autobahn.websocket.protocol.WebSocketProtocol.sendData
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        assert isinstance(module.hltype(method), daphne_tuning._Deferred)
        assert f"{module.hltype(method)}" == util.hltype(method)
        assert f"{module.hlval(1234)}" == util.hlval(1234)
