"""Work daphne's HTTP layer does that Gatehouse never uses, switched off.

Twisted's `Request` parses every POST body with a Content-Type into `request.args`: it builds an
`email.message.EmailMessage` just to read the media type (5.9% of the server's CPU on a `/v1`
call, py-spy, 2026-12-07) and decodes url-encoded and multipart forms. daphne never reads
`args`; it hands the raw body to the ASGI application, where Django parses forms itself. The
request factory daphne installs is therefore given `parsePOSTFormSubmission=False`, Twisted's
documented switch for this.
"""

from __future__ import annotations

import sys
from typing import Any


def apply() -> None:
    """Idempotent; a no-op unless daphne is the server (it is imported before the app is)."""
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
