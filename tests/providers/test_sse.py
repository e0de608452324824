"""`providers.adapters.sse`: events cut from a body however its bytes are chunked, by the rules
of the SSE format the SDKs' own decoders follow."""

from __future__ import annotations

import pytest

from providers.adapters.sse import Decoder


def decoded(parts: list[bytes]) -> list[tuple[str | None, bytes]]:
    """The events of a body arriving in `parts`, as the OpenAI adapter feeds them."""
    decoder = Decoder()
    found = [event for part in parts for event in decoder.feed(part)]
    found += decoder.end()
    return [(e.event, e.data) for e in found]


BODY = (
    b'data: {"n": 1}\n\n'
    b": keep-alive\n\n"
    b"event: message_delta\ndata: first line\ndata: second line\n\n"
    b"data:no space\n\n"
    b"id: 7\nretry: 100\ndata: [DONE]\n\n"
)
EXPECTED = [
    (None, b'{"n": 1}'),
    ("message_delta", b"first line\nsecond line"),
    (None, b"no space"),
    (None, b"[DONE]"),
]


def test_a_whole_body_gives_its_events_comments_skipped() -> None:
    assert decoded([BODY]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_the_same_events_however_the_bytes_are_cut(size: int) -> None:
    parts = [BODY[i : i + size] for i in range(0, len(BODY), size)]
    assert decoded(parts) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 4, 1000])
def test_crlf_and_cr_line_ends_even_split_across_chunks(newline: bytes, size: int) -> None:
    body = BODY.replace(b"\n", newline)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    assert decoded(parts) == EXPECTED


def test_an_unfinished_last_event_is_dropped() -> None:
    assert decoded([b"data: 1\n\ndata: 2\n"]) == [(None, b"1")]


def test_more_than_one_blank_line_between_events() -> None:
    assert decoded([b"data: 1\n\n\n\ndata: 2\n\n"]) == [(None, b"1"), (None, b"2")]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decoded([b"event: ping\n\nid: 3\n\ndata: x\n\n"]) == [(None, b"x")]
