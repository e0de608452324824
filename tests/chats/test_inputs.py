"""Message input validation, context building and titles: pure functions, no database."""

from __future__ import annotations

import pytest

from chats.frames import MAX_FRAME_BYTES, encode_token, frame_too_large
from chats.services.context import context_build, context_counted, title_from
from chats.services.errors import InputError
from chats.services.inputs import MAX_CONTENT_CHARS, message_input_parse, params_check
from providers.admission import estimate_input_tokens


def _code(data, **kwargs) -> tuple[str, dict]:
    with pytest.raises(InputError) as caught:
        message_input_parse(data, **kwargs)
    return caught.value.code, caught.value.fields


def test_a_full_message_parses() -> None:
    message = message_input_parse(
        {"content": "hi", "provider": "openai", "model": "m", "temperature": 1, "max_tokens": 5}
    )
    assert (message.content, message.provider, message.model) == ("hi", "openai", "m")
    assert message.temperature == 1.0 and message.max_tokens == 5


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "content_required"),
        ({"content": None}, "content_required"),
        ({"content": ""}, "content_empty"),
        ({"content": " \n\t "}, "content_empty"),
        ({"content": 5}, "invalid_type"),
        ({"content": "x" * (MAX_CONTENT_CHARS + 1)}, "content_too_long"),
        ({"content": "hi", "temperature": "hot"}, "invalid_type"),
        ({"content": "hi", "temperature": True}, "invalid_type"),
        ({"content": "hi", "max_tokens": 0}, "max_tokens_out_of_range"),
        ({"content": "hi", "max_tokens": -3}, "max_tokens_out_of_range"),
        ({"content": "hi", "max_tokens": 2.5}, "invalid_type"),
        ({"content": "hi", "provider": 7}, "invalid_type"),
        ({"content": "hi", "stream": True}, "unknown_field"),
    ],
)
def test_bad_input_is_refused_with_a_stable_code(data: dict, code: str) -> None:
    assert _code(data)[0] == code


def test_oversized_content_error_says_the_limit() -> None:
    _, fields = _code({"content": "x" * (MAX_CONTENT_CHARS + 1)})
    assert str(MAX_CONTENT_CHARS) in fields["content"][0]["message"]


@pytest.mark.parametrize("name", ["api_key", "base_url", "api_base", "extra_headers", "headers"])
def test_fields_that_steer_the_call_are_refused(name: str) -> None:
    code, fields = _code({"content": "hi", name: "https://evil.example"})
    assert code == "field_not_allowed"
    assert fields[name][0]["code"] == "field_not_allowed"


def test_several_bad_fields_are_all_reported_under_invalid() -> None:
    code, fields = _code({"content": "", "max_tokens": 0})
    assert code == "invalid"
    assert set(fields) == {"content", "max_tokens"}


def test_the_legacy_content_field_is_message() -> None:
    assert message_input_parse({"message": "hi"}, content_field="message").content == "hi"
    assert _code({"content": "hi"}, content_field="message")[0] == "invalid"


def test_a_non_object_is_refused() -> None:
    assert _code(["content"])[0] == "invalid"


def test_temperature_must_be_in_the_providers_range() -> None:
    message = message_input_parse({"content": "hi", "temperature": 1.5})
    params_check(message, model="m", max_output_tokens=100, temperature_range=(0.0, 2.0))
    with pytest.raises(InputError) as caught:
        params_check(message, model="m", max_output_tokens=100, temperature_range=(0.0, 1.0))
    assert caught.value.code == "temperature_out_of_range"
    assert "between 0 and 1" in caught.value.message


def test_max_tokens_must_be_within_the_models_cap() -> None:
    message = message_input_parse({"content": "hi", "max_tokens": 101})
    with pytest.raises(InputError) as caught:
        params_check(message, model="m", max_output_tokens=100, temperature_range=(0.0, 2.0))
    assert caught.value.code == "max_tokens_out_of_range"
    assert "100" in caught.value.message


# --- context -------------------------------------------------------------------------------


def _history(turns: int) -> list[tuple[str, str]]:
    return [
        ("user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 40) for i in range(turns)
    ]


def test_context_is_system_history_then_the_new_message() -> None:
    turns = context_build(
        system_prompt="Be brief.",
        history=_history(2),
        content="now",
        context_window=10_000,
        max_tokens=100,
    )
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[-1]["content"] == "now"


def test_oldest_turns_are_dropped_first_to_fit_the_window() -> None:
    history = _history(20)
    turns = context_build(
        system_prompt="", history=history, content="now", context_window=700, max_tokens=100
    )
    kept = [t["content"] for t in turns[:-1]]
    assert 0 < len(kept) < len(history)
    assert kept == [text for _, text in history[-len(kept) :]]  # the newest, in order
    assert turns[0]["role"] == "user"  # never opens on an answer


def test_the_context_comes_counted_as_admission_would_count_it() -> None:
    for window in (700, 10_000):
        turns, counted = context_counted(
            system_prompt="Be brief.",
            history=_history(20),
            content="now",
            context_window=window,
            max_tokens=100,
        )
        assert counted == estimate_input_tokens(turns)
        assert turns == context_build(
            system_prompt="Be brief.",
            history=_history(20),
            content="now",
            context_window=window,
            max_tokens=100,
        )


def test_a_message_that_cannot_fit_the_window_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        context_build(
            system_prompt="", history=[], content="word " * 500, context_window=300, max_tokens=100
        )
    assert caught.value.code == "context_too_long"


def test_title_is_the_first_words_of_the_first_message() -> None:
    assert title_from("  Plan   a trip\nto Lisbon ") == "Plan a trip to Lisbon"
    long = title_from("word " * 100)
    assert long.endswith("…") and len(long) <= 80


# --- frames --------------------------------------------------------------------------------


def test_token_frames_are_valid_json_for_any_text() -> None:
    import json

    for delta in ["plain ", 'quote " and \\ back', "ünïcødé ✓", "\n\t\x00"]:
        assert json.loads(encode_token(delta)) == {"type": "token", "delta": delta}


def test_frame_size_is_measured_in_bytes() -> None:
    assert not frame_too_large("a" * MAX_FRAME_BYTES)
    assert frame_too_large("a" * (MAX_FRAME_BYTES + 1))
    assert frame_too_large("é" * (MAX_FRAME_BYTES // 2 + 1))  # two bytes each
