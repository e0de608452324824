"""A Django ASGI handler without the middleware stack, for the `/v1` gateway.

Programs call `/v1` with a bearer token: no session, cookie, CSRF form, flash message or HTML
page is involved, so the session, CSRF, auth, messages, clickjacking and CSP middlewares have
nothing to do there. They are not free: each `MiddlewareMixin` middleware in front of an async
view runs its request and response hooks through `sync_to_async`, two thread hops apiece, which
measured as most of the gateway's overhead. This handler keeps only what the gateway needs:
the request id and the security headers an API response should carry.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponseBase

from config.middleware import RequestIdMiddleware


class _ApiHeaders:
    """`X-Content-Type-Options` and `Referrer-Policy`, as SecurityMiddleware would set them."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class LeanASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        inner = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = _ApiHeaders(RequestIdMiddleware(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"the gateway serves HTTP only, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `ASGIHandler.handle` without what costs the gateway a thread per request:
        no `ThreadSensitiveContext` (the few sync calls go to config.dbhop's threads, each keeping
        its database connection, instead of a new thread and a pool checkout per request) and no
        `request_started` signal hop. `request_finished` still fires, from `response.close()`
        on the event loop: its receivers find no connection or cache to close in this thread.
        The client hanging up still cancels the view."""
        try:
            body = await self._read_body(receive)
        except RequestAborted:
            return
        request, error_response = self.create_request(scope, body)
        if request is None:
            await self.send_response(error_response, send)
            return

        async def process_request() -> None:
            response = await self.get_response_async(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client hung up while the response was being sent
            finally:
                response.close()

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this handler is cancelled (daphne's shutdown, its close timeout): the
            # view learns it as a hang-up and hands its call over to be settled. Django's own
            # handler leaves its tasks running then.
            for task in tasks:
                task.cancel()  # a no-op for the one that finished
            await asyncio.wait(tasks)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, RequestAborted):
                raise error

    async def _read_body(self, receive: Any) -> io.BytesIO:
        # The gateway's bodies are small JSON documents: memory, not a spooled temporary file.
        body = io.BytesIO()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            body.write(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body.seek(0)
        return body
