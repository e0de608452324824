"""The chats API in the OpenAPI schema: present, valid, and without generator warnings."""

from __future__ import annotations

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

CHAT_PATHS = {
    "/api/chats",
    "/api/chats/{id}",
    "/api/chats/{id}/archive",
    "/api/chats/{id}/unarchive",
    "/api/chats/{id}/cancel",
    "/api/chats/{chat_id}/messages",
    "/api/system-prompts",
    "/api/system-prompts/{id}",
    "/chat/{chat_id}",
}


def test_the_chats_api_is_in_a_valid_schema_without_warnings() -> None:
    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert set(schema["paths"]) >= CHAT_PATHS
    ours = ("chat", "Chat", "Message", "SystemPrompt", "system")
    warnings = [w for w in GENERATOR_STATS._warn_cache if any(name in w for name in ours)]
    errors = [e for e in GENERATOR_STATS._error_cache if any(name in e for name in ours)]
    assert not warnings and not errors


def test_sending_a_message_documents_its_errors() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = schema["paths"]["/api/chats/{chat_id}/messages"]["post"]["responses"]
    assert {"201", "400", "402", "404", "409", "429", "502"} <= set(responses)


def test_cancelling_documents_its_answers() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = schema["paths"]["/api/chats/{id}/cancel"]["post"]["responses"]
    assert set(responses) == {"202", "404", "409"}
