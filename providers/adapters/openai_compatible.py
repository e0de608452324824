"""Servers that speak OpenAI's chat completions API (vLLM, llama.cpp, LiteLLM, LM Studio,
OpenRouter...): the OpenAI adapter with a required base URL and the widely supported
`max_tokens` instead of OpenAI's newer `max_completion_tokens`.

Known limit: a few servers reject `stream_options` (they predate it). It is still sent, because
without it most servers report no usage in streams and every count would be an estimate; for
such a server, a subclass with `stream_usage = False` (usage then estimated) is the fix.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Endpoint, Timeouts
from .openai import OpenAIAdapter


class OpenAICompatibleAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "openai_compatible"
    label: ClassVar[str] = "OpenAI-compatible"
    default_base_url: ClassVar[str | None] = None
    max_tokens_param: ClassVar[str] = "max_tokens"

    def __init__(self, endpoint: Endpoint, *, timeouts: Timeouts | None = None) -> None:
        if not endpoint.base_url:
            raise ValueError("an OpenAI-compatible endpoint needs a base URL")
        super().__init__(endpoint, timeouts=timeouts)
