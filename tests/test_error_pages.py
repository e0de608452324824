"""Unknown addresses and unhandled failures: API clients get their API's error shape, people a
portal page (`config.error_pages`)."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from config.error_pages import server_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/nope", "/api/chats/1/nope", "/chat/1/nope"])
def test_an_unknown_api_address_answers_in_the_api_shape(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and path in error["message"]
    assert error["request_id"] == response["X-Request-ID"]


def test_an_unknown_gateway_address_answers_in_openai_s_shape(client: Client) -> None:
    response = client.post("/v1/nope", {}, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "Nothing answers at /v1/nope.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


def test_an_unknown_portal_address_is_a_page_with_a_way_back(client: Client, alice, acme) -> None:
    client.force_login(alice)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and 'href="/"' in page
    assert alice.email in page and "Sign out" in page  # the portal's header


def test_a_failure_is_a_page_for_people_and_json_for_programs() -> None:
    factory = RequestFactory()
    page = server_error(factory.get("/chats/1/"))
    assert page.status_code == 500 and b"Something went wrong" in page.content
    api = server_error(factory.post("/api/chats"))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"
    assert b'"code": "internal_error"' in api.content
    gateway = server_error(factory.post("/v1/chat/completions"))
    assert b'"type": "server_error"' in gateway.content
