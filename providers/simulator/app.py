"""The simulator's ASGI app: routing, request/response plumbing and the /_sim/* control endpoints.

Pure ASGI on purpose: it is the "direct" arm of benchmarks, so a frame costs one formatted bytes
object and one `send`. No Django here, the app must start standalone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, NoReturn
from urllib.parse import parse_qs

from providers.simulator import anthropic_wire, ollama_wire, openai_wire
from providers.simulator.scenario import Scenario, build_scenario, content_text

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[["Exchange"], Awaitable[None]]

STALL_LIMIT = 120.0
JSON = "application/json"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(payload: object) -> bytes:
    return _encode(payload).encode("utf-8")


class SimulatedFault(Exception):
    """Raised inside the app to make the server drop a connection mid-response (fault `reset`)."""


class _QuietSimulatedFaults(logging.Filter):
    # uvicorn logs every exception escaping the app with a traceback; ours are deliberate.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedFault))


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietSimulatedFaults) for f in logger.filters):
        logger.addFilter(_QuietSimulatedFaults())


class Exchange:
    """One HTTP request/response, with the helpers the wire modules format frames into."""

    __slots__ = (
        "_wake",
        "app",
        "body",
        "headers",
        "method",
        "path",
        "query",
        "receive",
        "send",
        "started",
    )

    def __init__(
        self, app: SimulatorApp, scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        self.app = app
        self.receive = receive
        self.send = send
        self.path = path
        self.method: str = scope["method"]
        self.query: dict[str, list[str]] = parse_qs(
            scope.get("query_string", b"").decode("latin-1")
        )
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        self.body = b""
        self.started = False
        # Completes when the client disconnects; cancelled when the app drains.
        self._wake: asyncio.Task[None] | None = None

    # -- request -------------------------------------------------------------------------------
    async def read_body(self) -> bytes:
        parts = []
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                break
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.body = b"".join(parts)
        return self.body

    async def read_json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one (the caller answers 400)."""
        try:
            payload = json.loads(await self.read_body() or b"null")
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def key_valid(self, key: str | None) -> bool:
        if not key:
            return False
        return key.startswith("sim-") or key in self.app.api_keys

    def plan(self, payload: dict[str, Any], system: object, max_tokens: int | None) -> Scenario:
        """Scenario for a chat payload with `messages`; `system` is prepended (Anthropic)."""
        messages = [m for m in payload.get("messages") or () if isinstance(m, dict)]
        contents = [content_text(m.get("content")) for m in messages]
        if system:
            contents.insert(0, content_text(system))
        last_user = next(
            (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        return self.app.plan(contents, last_user, max_tokens)

    def fault(self, scenario: Scenario) -> str | None:
        """The fault to apply to this request, after `fail_times` bookkeeping."""
        if scenario.fault is None or scenario.fail_times is None:
            return scenario.fault
        seen = self.app.fail_counts[scenario.fault_key] = (
            self.app.fail_counts[scenario.fault_key] + 1
        )
        return scenario.fault if seen <= scenario.fail_times else None

    # -- response ------------------------------------------------------------------------------
    async def start(
        self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.started = True
        raw = [(b"content-type", content_type.encode("latin-1"))]
        raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = JSON,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        await self.start(status, content_type, [*headers, ("content-length", str(len(body)))])
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def respond_json(
        self, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        await self.respond(status, dumps(payload), JSON, headers)

    async def frame(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def frames(
        self, pieces: Sequence[str], render: Callable[[str], bytes], gap: float
    ) -> None:
        """One frame per piece, `gap` seconds apart: the hot loop of every stream."""
        send = self.send
        for i, piece in enumerate(pieces):
            if i and gap > 0:
                await self.sleep(gap)
            await send({"type": "http.response.body", "body": render(piece), "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def sleep(self, seconds: float) -> None:
        """Wait, but stop early when the client leaves or the server drains: a client that
        timed out, or a shutdown, must not wait out the rest of a long delay or stall."""
        if seconds <= 0 or self.app.draining:
            return
        if self._wake is None:
            self._wake = asyncio.ensure_future(self._wait_disconnect())
        await asyncio.wait((self._wake,), timeout=seconds)

    @property
    def client_gone(self) -> bool:
        return self._wake is not None and self._wake.done() and not self._wake.cancelled()

    async def _wait_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    def interrupt(self) -> None:
        if self._wake is not None:
            self._wake.cancel()

    async def abort(self, content_type: str = JSON) -> NoReturn:
        """Drop the connection: with a started chunked body, the client sees it incomplete."""
        if not self.started:
            await self.start(200, content_type)
        raise SimulatedFault("simulated connection reset")

    async def stall(self, content_type: str = JSON) -> None:
        """Say nothing until the client leaves, at most STALL_LIMIT seconds, then drop it."""
        await self.sleep(STALL_LIMIT)
        if not self.client_gone:  # the limit passed or the server is draining
            await self.abort(content_type)


_ROUTES: dict[str, dict[str, Handler]] = {
    "/openai/v1/chat/completions": {"POST": openai_wire.chat_completions},
    "/openai/v1/models": {"GET": openai_wire.list_models},
    "/anthropic/v1/messages": {"POST": anthropic_wire.messages},
    "/anthropic/v1/models": {"GET": anthropic_wire.list_models},
    "/ollama/api/chat": {"POST": ollama_wire.chat},
    "/ollama/api/tags": {"GET": ollama_wire.tags},
    "/ollama/api/show": {"POST": ollama_wire.show},
    "/ollama/api/version": {"GET": ollama_wire.version},
    "/ollama": {"GET": ollama_wire.root, "HEAD": ollama_wire.root},
    "/ollama/": {"GET": ollama_wire.root, "HEAD": ollama_wire.root},
}
# Routes with an id as the last path segment (`GET .../models/{id}`).
_PREFIX_ROUTES: dict[str, dict[str, Handler]] = {
    "/openai/v1/models/": {"GET": openai_wire.retrieve_model},
    "/anthropic/v1/models/": {"GET": anthropic_wire.retrieve_model},
}


class SimulatorApp:
    """ASGI callable holding the configuration and the in-memory counters."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (),
        default_delay: float = 0.0,
        default_first_token_delay: float = 0.0,
    ) -> None:
        self.api_keys = frozenset(api_keys)
        self.default_delay = default_delay
        self.default_first_token_delay = default_first_token_delay
        self.stats: Counter[str] = Counter()
        self.fail_counts: Counter[str] = Counter()
        self.draining = False
        self._live: set[Exchange] = set()

    def plan(self, contents: list[str], last_user: str, max_tokens: int | None) -> Scenario:
        return build_scenario(
            contents,
            last_user,
            max_tokens,
            default_delay=self.default_delay,
            default_first_token_delay=self.default_first_token_delay,
        )

    def drain(self) -> None:
        """End every delay and stall now, so a server can stop promptly. Call it on the loop
        serving the app; `SimulatorServer.stop()` does."""
        self.draining = True
        for ex in list(self._live):
            ex.interrupt()

    def reset(self) -> None:
        self.stats.clear()
        self.fail_counts.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        # Mounted apps may get the full path (ASGI spec) or one already stripped (config.mount).
        if root_path and path.startswith(root_path + "/"):
            path = path[len(root_path) :]
        ex = Exchange(self, scope, receive, send, path)

        if path.startswith("/_sim/"):
            await self._control(ex)
            return
        self.stats[path] += 1
        methods = _ROUTES.get(path)
        if methods is None:
            prefix = path[: path.rfind("/") + 1]
            methods = _PREFIX_ROUTES.get(prefix) if len(path) > len(prefix) else None
        if methods is None:
            await ex.respond_json(404, {"error": f"no simulated endpoint at {path}"})
            return
        handler = methods.get(ex.method)
        if handler is None:
            await ex.respond_json(405, {"error": f"method {ex.method} not allowed"})
            return
        self._live.add(ex)
        try:
            await handler(ex)
        finally:
            self._live.discard(ex)
            ex.interrupt()

    async def _control(self, ex: Exchange) -> None:
        if ex.path == "/_sim/stats" and ex.method == "GET":
            await ex.respond_json(
                200,
                {
                    "requests": sum(self.stats.values()),
                    "by_path": dict(self.stats),
                    "fail_counts": dict(self.fail_counts),
                },
            )
        elif ex.path == "/_sim/reset" and ex.method == "POST":
            self.reset()
            await ex.respond_json(200, {"ok": True})
        elif ex.path == "/_sim/redirect" and ex.method in ("GET", "POST"):
            target = (ex.query.get("to") or [""])[0]
            if not target:
                await ex.respond_json(400, {"error": "missing ?to=URL"})
                return
            await ex.respond(307, b"", "text/plain", [("location", target)])
        else:
            await ex.respond_json(404, {"error": f"no simulator control endpoint {ex.path}"})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Only so the app also runs under servers with lifespan on; there is nothing to set up.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_app(
    *,
    api_keys: Iterable[str] = (),
    default_delay: float = 0.0,
    default_first_token_delay: float = 0.0,
) -> SimulatorApp:
    """A fresh simulator with its own stats and fail counters. `sim-*` keys are always valid."""
    _quiet_uvicorn()
    return SimulatorApp(
        api_keys=api_keys,
        default_delay=default_delay,
        default_first_token_delay=default_first_token_delay,
    )


app = build_app()
