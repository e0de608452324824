"""What the provider is sent: the system prompt, as much recent history as the model's window
holds, and the new message. Also the chat title drawn from a first message."""

from __future__ import annotations

import re
from collections.abc import Sequence

from chats.services.errors import InputError
from providers.adapters.base import ChatTurn, estimate_tokens

# Chat formats add a few tokens per message (role markers, separators); OpenAI documents ~4.
PER_MESSAGE_TOKENS = 4
TITLE_MAX_CHARS = 80

HistoryTurn = tuple[str, str]  # (role, content)


def context_build(
    *,
    system_prompt: str,
    history: Sequence[HistoryTurn],
    content: str,
    context_window: int,
    max_tokens: int,
) -> list[ChatTurn]:
    """The turns to send. The window must hold the system prompt, the new message and the
    answer (`max_tokens`); history fills what is left, newest first, and the oldest turns are
    dropped. Tokens are estimated (the provider's tokenizer is not at hand); the estimate errs
    on the high side for English text."""
    turns, _ = context_counted(
        system_prompt=system_prompt,
        history=history,
        content=content,
        context_window=context_window,
        max_tokens=max_tokens,
    )
    return turns


def context_counted(
    *,
    system_prompt: str,
    history: Sequence[HistoryTurn],
    content: str,
    context_window: int,
    max_tokens: int,
) -> tuple[list[ChatTurn], int]:
    """`context_build`, and the input tokens of the turns as admission estimates them (the
    sum of `estimate_tokens` of their contents), counted once: the estimate runs over every turn
    of the history on every message."""
    budget = context_window - max_tokens - _tokens(system_prompt) - _tokens(content)
    if budget < 0:
        raise InputError.one(
            "content",
            "context_too_long",
            "The message and system prompt do not fit the model's context window "
            f"({context_window} tokens, of which {max_tokens} are kept for the answer).",
        )
    kept = _recent(history, budget)
    turns: list[ChatTurn] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    turns.extend({"role": role, "content": text} for role, text, _ in kept)  # type: ignore[misc]
    turns.append({"role": "user", "content": content})
    counted = estimate_tokens(system_prompt) + estimate_tokens(content)
    return turns, counted + sum(tokens for _, _, tokens in kept)


def history_tokens(*, system_prompt: str, history: Sequence[HistoryTurn]) -> int:
    """The system prompt and every turn of `history`, in tokens as `context_counted` counts them:
    no fewer than the context of the chat's next message holds, besides that message."""
    return estimate_tokens(system_prompt) + sum(estimate_tokens(text) for _, text in history)


def _recent(history: Sequence[HistoryTurn], budget: int) -> list[tuple[str, str, int]]:
    """The newest turns that fit `budget`, oldest first, with each one's `estimate_tokens`."""
    kept: list[tuple[str, str, int]] = []
    for role, text in reversed(history):
        tokens = estimate_tokens(text)
        cost = tokens + PER_MESSAGE_TOKENS if text else 0
        if cost > budget:
            break
        budget -= cost
        kept.append((role, text, tokens))
    kept.reverse()
    # Providers such as Anthropic want the conversation to open with a user turn.
    while kept and kept[0][0] != "user":
        kept.pop(0)
    return kept


def _tokens(text: str) -> int:
    return estimate_tokens(text) + PER_MESSAGE_TOKENS if text else 0


_SPACES = re.compile(r"\s+")


def title_from(content: str) -> str:
    """A title from the first message, without asking a model: its first words, cut at a word
    boundary."""
    text = _SPACES.sub(" ", content).strip()
    if len(text) <= TITLE_MAX_CHARS:
        return text
    cut = text[: TITLE_MAX_CHARS - 1]
    if " " in cut[TITLE_MAX_CHARS // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + "…"
