"""Credentials over REST: admins only, write-only keys, tenant isolation, live test, rotation."""

from __future__ import annotations

import logging

import pytest

from providers.models import ProviderCredential

CANARY = "sim-canary-5f2e9c1d7a3b"


def _create(client, sim_url: str, **extra):
    body = {
        "name": "Team OpenAI",
        "kind": "openai",
        "base_url": sim_url + "/openai/v1",
        "api_key": CANARY,
        **extra,
    }
    return client.post("/api/credentials", body, format="json")


def test_admin_creates_a_credential_and_never_sees_the_key_again(alice_api, sim_url) -> None:
    response = _create(alice_api, sim_url)
    assert response.status_code == 201, response.content
    body = response.json()
    assert "api_key" not in body
    assert body["key_hint"] == "sim…9c1d"[:3] + "…" + CANARY[-4:]
    assert body["provider"] == "openai"
    stored = ProviderCredential.objects.get(pk=body["id"])
    assert CANARY not in stored.secret_encrypted
    assert stored.secret() == CANARY
    for url in ["/api/credentials", f"/api/credentials/{body['id']}"]:
        assert CANARY not in alice_api.get(url).content.decode()


def test_members_get_403_on_credentials(bob_api, sim_url) -> None:
    assert bob_api.get("/api/credentials").status_code == 403
    assert _create(bob_api, sim_url).status_code == 403
    assert ProviderCredential.objects.count() == 0


def test_another_organisations_credential_is_404(alice_api, charlie_api, sim_url) -> None:
    cred_id = _create(alice_api, sim_url).json()["id"]
    for method, url in [
        ("get", f"/api/credentials/{cred_id}"),
        ("patch", f"/api/credentials/{cred_id}"),
        ("delete", f"/api/credentials/{cred_id}"),
        ("post", f"/api/credentials/{cred_id}/test"),
        ("post", f"/api/credentials/{cred_id}/rotate"),
    ]:
        response = getattr(charlie_api, method)(url, {"api_key": "sim-x"}, format="json")
        assert response.status_code == 404, (method, url)
    assert charlie_api.get("/api/credentials").json()["results"] == []
    assert ProviderCredential.objects.get(pk=cred_id).version == 1


def test_live_test_reports_success_and_failure(alice_api, sim_url) -> None:
    good = _create(alice_api, sim_url).json()["id"]
    result = alice_api.post(f"/api/credentials/{good}/test").json()
    assert result["ok"] is True and result["models"] >= 1
    bad = _create(alice_api, sim_url, name="Bad", api_key="wrong-key-123456").json()["id"]
    result = alice_api.post(f"/api/credentials/{bad}/test").json()
    assert result == {"ok": False, "code": "auth_failed", "message": result["message"], "models": 0}
    assert "wrong-key" not in result["message"]


def test_update_changes_settings_but_not_the_key(alice_api, sim_url) -> None:
    cred_id = _create(alice_api, sim_url).json()["id"]
    response = alice_api.patch(
        f"/api/credentials/{cred_id}", {"priority": 5, "enabled": False}, format="json"
    )
    assert response.status_code == 200
    stored = ProviderCredential.objects.get(pk=cred_id)
    assert (stored.priority, stored.enabled, stored.secret()) == (5, False, CANARY)


def test_rotation_tests_the_new_key_first(alice_api, sim_url) -> None:
    cred_id = _create(alice_api, sim_url).json()["id"]
    refused = alice_api.post(
        f"/api/credentials/{cred_id}/rotate", {"api_key": "bad-key-0000000"}, format="json"
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "rotation_test_failed"
    assert ProviderCredential.objects.get(pk=cred_id).secret() == CANARY
    forced = alice_api.post(
        f"/api/credentials/{cred_id}/rotate",
        {"api_key": "bad-key-0000000", "force": True},
        format="json",
    )
    assert forced.status_code == 200
    good = alice_api.post(
        f"/api/credentials/{cred_id}/rotate", {"api_key": "sim-rotated-key-42"}, format="json"
    )
    assert good.status_code == 200
    stored = ProviderCredential.objects.get(pk=cred_id)
    assert stored.secret() == "sim-rotated-key-42"
    assert stored.version == 3
    assert stored.rotated_at is not None
    assert "sim-rotated-key-42" not in good.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest",
        "http://[::ffff:a9fe:a9fe]/",
        "http://2852039166/",
        "ftp://127.0.0.1/",
    ],
)
def test_refused_base_urls_are_400(alice_api, url) -> None:
    response = alice_api.post(
        "/api/credentials",
        {"name": "x", "kind": "openai_compatible", "base_url": url, "api_key": "sim-k"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"url_refused", "invalid"}
    assert ProviderCredential.objects.count() == 0


def test_compatible_and_ollama_need_a_base_url(alice_api) -> None:
    response = alice_api.post(
        "/api/credentials", {"name": "x", "kind": "ollama", "api_key": "k"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "base_url_required"


def test_canary_never_reaches_logs(alice_api, sim_url, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cred_id = _create(alice_api, sim_url, base_url=sim_url + "/nowhere/v1").json()["id"]
    alice_api.post(f"/api/credentials/{cred_id}/test")
    alice_api.get("/api/providers")
    assert CANARY not in caplog.text
