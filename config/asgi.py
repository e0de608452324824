"""ASGI entry point: HTTP through Django, WebSockets through Channels.

When DEBUG is on (or GATEHOUSE_SIMULATOR_MOUNT=1) the upstream simulator is mounted in-process
under /_simulator/, so `make run` needs no second process and no provider keys. `/v1` goes to a
Django handler without the browser middleware stack (config.lean).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.ws import websocket_stack  # noqa: E402
from chats.routing import websocket_urlpatterns  # noqa: E402
from config import daphne_tuning  # noqa: E402
from config.lean import LeanASGIHandler  # noqa: E402
from config.mount import mount_prefix  # noqa: E402

daphne_tuning.apply()

# The OpenAI-compatible gateway skips the browser-oriented middleware stack (see config.lean).
http_app = mount_prefix("/v1", LeanASGIHandler(), fallback=django_asgi_app, strip=False)
if settings.GATEHOUSE_SIMULATOR_MOUNT:
    from providers.simulator.app import app as simulator_app

    http_app = mount_prefix("/_simulator", simulator_app, fallback=http_app)
if settings.DEBUG or os.environ.get("GATEHOUSE_SERVE_STATIC") == "1":
    # daphne serves no static files; in development and the browser tests Django does.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(http_app)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": websocket_stack(URLRouter(websocket_urlpatterns)),
    }
)
