"""Serve a second ASGI app under a path prefix, in front of Django."""

from __future__ import annotations

from typing import Any


def mount_prefix(prefix: str, app: Any, *, fallback: Any, strip: bool = True) -> Any:
    """Requests under `prefix` go to `app` (with the prefix moved to `root_path` when `strip`,
    as for a separate application; kept in the path for another Django handler)."""

    async def dispatch(scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            inner = (
                dict(scope, path=path[len(prefix) :] or "/", root_path=prefix) if strip else scope
            )
            await app(inner, receive, send)
            return
        await fallback(scope, receive, send)

    return dispatch
