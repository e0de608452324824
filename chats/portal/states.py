"""What the portal says about each way an answer can fail, keyed by the stable error codes of
the streaming protocol. One table serves the server-rendered history and, as a JSON data block,
the live page's script, so a failure reads the same before and after a reload."""

from __future__ import annotations

from typing import TypedDict


class State(TypedDict):
    title: str
    hint: str


FAILURES: dict[str, State] = {
    "budget_exceeded": {
        "title": "Budget reached",
        "hint": "A spending limit that applies to you is used up; no request was sent.",
    },
    "rate_limited": {
        "title": "Too many requests",
        "hint": "Wait a moment, then send again.",
    },
    "upstream_unavailable": {
        "title": "Provider unavailable",
        "hint": "The provider did not answer. Try again shortly or pick another provider.",
    },
    "overloaded": {
        "title": "Provider overloaded",
        "hint": "The provider is busy. Try again shortly or pick another provider.",
    },
    "service_unavailable": {
        "title": "Service unavailable",
        "hint": "Gatehouse cannot take the request right now. Try again shortly.",
    },
    "timeout": {
        "title": "Provider timed out",
        "hint": "The provider took too long. Try again or pick another model.",
    },
    "model_not_found": {
        "title": "Model not found",
        "hint": "The provider does not offer this model. Pick another one.",
    },
    "unknown_model": {
        "title": "Model not found",
        "hint": "This organisation offers no such model. Pick another one.",
    },
    "unknown_provider": {
        "title": "Provider not found",
        "hint": "This organisation has no such provider. Pick another one.",
    },
    "model_disabled": {
        "title": "Model switched off",
        "hint": "Your organisation has switched this model off. Pick another one.",
    },
    "no_provider": {
        "title": "No provider configured",
        "hint": "Your organisation has no provider credentials yet. Ask an admin to add one.",
    },
    "auth_failed": {
        "title": "Provider refused the key",
        "hint": "The organisation's key for this provider was rejected. Ask an admin to check it.",
    },
    "stream_interrupted": {
        "title": "Answer interrupted",
        "hint": "The connection to the provider broke; the partial answer is kept.",
    },
    "busy": {
        "title": "Still answering",
        "hint": "An answer is already being generated in this chat; wait for it or stop it.",
    },
    "access_revoked": {
        "title": "Access ended",
        "hint": "Your access to this organisation has ended. Reload the page.",
    },
    "chat_deleted": {
        "title": "Chat deleted",
        "hint": "This chat was deleted, perhaps in another tab. Your other chats are in the list.",
    },
}

GENERIC: State = {"title": "Something went wrong", "hint": "Try again."}

# Message statuses that mean the answer is not the whole answer.
STATUS_LABELS = {
    "partial": "Interrupted: partial answer",
    "cancelled": "Stopped",
    "error": "Failed",
    "streaming": "Still streaming",
}


def failure(code: str) -> State:
    return FAILURES.get(code, GENERIC)
