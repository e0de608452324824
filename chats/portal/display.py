"""How one message shows on the page: its sanitised body, its state, its cost."""

from __future__ import annotations

from typing import Any

from django.utils.html import linebreaks
from django.utils.safestring import mark_safe

from chats.models import Message
from chats.portal.budget import AnswerCost
from chats.portal.markdown import render_markdown
from chats.portal.states import STATUS_LABELS, failure


def _status_label(message: Message) -> str:
    # A stream that broke after its first tokens is an error that still has an answer to show.
    if message.status == Message.Status.ERROR and message.content:
        return STATUS_LABELS[Message.Status.PARTIAL]
    return STATUS_LABELS.get(message.status, "")


def message_view(message: Message, cost: AnswerCost | None) -> dict[str, Any]:
    """Answers are Markdown (sanitised); the member's own words are shown as they typed them."""
    assistant = message.role == Message.Role.ASSISTANT
    if assistant:
        body = render_markdown(message.content)
    else:
        body = mark_safe(linebreaks(message.content, autoescape=True))  # noqa: S308 - escaped
    return {
        "message": message,
        "assistant": assistant,
        "body": body,
        "cost": cost,
        "status_label": _status_label(message),
        "failure": failure(message.error_code) if message.error_code else None,
    }
