"""`manage.py simulate_upstreams`: serve the upstream simulator as its own process."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


def base_urls(host: str, port: int) -> dict[str, str]:
    """The base URL each provider's SDK is given (what a credential's base_url should be)."""
    root = f"http://{host}:{port}"
    return {
        "openai": f"{root}/openai/v1",
        "anthropic": f"{root}/anthropic",
        "ollama": f"{root}/ollama",
    }


class Command(BaseCommand):
    help = "Serve a fake OpenAI / Anthropic / Ollama upstream (see docs/simulator-spec.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument(
            "--delay", type=float, default=0.0, help="Default seconds between stream chunks."
        )
        parser.add_argument(
            "--first-token-delay",
            type=float,
            default=0.0,
            help="Default seconds before the first token.",
        )
        parser.add_argument(
            "--api-key",
            action="append",
            default=[],
            help="Accept this key besides any 'sim-*' key (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here so `manage.py help` does not pay for uvicorn.
        import uvicorn

        from providers.simulator.app import build_app
        from providers.simulator.server import GRACEFUL_SHUTDOWN_S

        app = build_app(
            api_keys=options["api_key"],
            default_delay=options["delay"],
            default_first_token_delay=options["first_token_delay"],
        )
        host, port = options["host"], options["port"]
        for provider, url in base_urls(host, port).items():
            self.stdout.write(f"{provider:<10} {url}")
        self.stdout.write(f"{'control':<10} http://{host}:{port}/_sim/stats")
        self.stdout.flush()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            # Deliberately stalled streams must not hold Ctrl-C hostage.
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        uvicorn.Server(config).run()
