"""Members management and the audit log: who did what, never a secret."""

from __future__ import annotations

import json

from django.core import mail
from django.test import Client

from accounts.models import AuditEvent, Membership
from tests.conftest import make_credential

CANARY = "sim-canary-audit-77aa99bb"


def test_admin_invites_a_new_member_by_email(
    alice_api, acme, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.post(
            "/api/members", {"email": "dora@example.com", "role": "member"}, format="json"
        )
    assert response.status_code == 201
    assert Membership.objects.filter(organization=acme, user__email="dora@example.com").exists()
    assert len(mail.outbox) == 1
    assert "dora@example.com" in mail.outbox[0].to
    assert "/accounts/reset/" in mail.outbox[0].body
    event = AuditEvent.objects.get(action="member.added")
    assert event.summary["after"] == {"email": "dora@example.com", "role": "member"}
    assert event.actor_label.startswith("alice@example.com")


def test_members_cannot_manage_members(bob_api, alice_membership) -> None:
    assert bob_api.get("/api/members").status_code == 403
    assert bob_api.delete(f"/api/members/{alice_membership.pk}").status_code == 403
    assert bob_api.get("/api/audit").status_code == 403


def test_role_change_and_removal_are_audited(alice_api, bob_membership) -> None:
    response = alice_api.patch(
        f"/api/members/{bob_membership.pk}", {"role": "admin"}, format="json"
    )
    assert response.json()["role"] == "admin"
    assert alice_api.delete(f"/api/members/{bob_membership.pk}").status_code == 204
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["member.role_changed", "member.removed"]
    change = AuditEvent.objects.get(action="member.role_changed").summary
    assert change == {"before": {"role": "member"}, "after": {"role": "admin"}}


def test_the_last_owner_stays(alice_api, alice_membership) -> None:
    response = alice_api.delete(f"/api/members/{alice_membership.pk}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"


def test_outsiders_cannot_touch_members(charlie_api, bob_membership) -> None:
    assert charlie_api.delete(f"/api/members/{bob_membership.pk}").status_code == 404
    assert Membership.objects.filter(pk=bob_membership.pk).exists()


def test_credential_lifecycle_is_audited_without_the_secret(alice_api, sim_url, acme) -> None:
    created = alice_api.post(
        "/api/credentials",
        {"name": "K", "kind": "openai", "base_url": sim_url + "/openai/v1", "api_key": CANARY},
        format="json",
    ).json()
    cid = created["id"]
    alice_api.post(f"/api/credentials/{cid}/test")
    alice_api.post(f"/api/credentials/{cid}/rotate", {"api_key": CANARY + "-2"}, format="json")
    alice_api.patch(f"/api/credentials/{cid}", {"priority": 3}, format="json")
    alice_api.delete(f"/api/credentials/{cid}")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == [
        "credential.created",
        "credential.tested",
        "credential.rotated",
        "credential.updated",
        "credential.deleted",
    ]
    dump = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert CANARY not in dump
    audit = alice_api.get("/api/audit").content.decode()
    assert "credential.rotated" in audit and CANARY not in audit


def test_token_issue_and_revoke_are_audited(alice_api) -> None:
    token = alice_api.post("/api/tokens", {"name": "ci"}, format="json").json()
    alice_api.post(f"/api/tokens/{token['id']}/revoke")
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "token.issued",
        "token.revoked",
    ]
    assert token["token"] not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_other_organisations_do_not_see_the_audit(alice_api, charlie_api, acme, sim_url) -> None:
    make_credential(acme, sim_url, "openai")
    alice_api.post("/api/tokens", {"name": "ci"}, format="json")
    assert charlie_api.get("/api/audit").json()["results"] == []


def test_staff_login_is_audited_and_audit_admin_is_read_only(db) -> None:
    from accounts.models import User

    User.objects.create_superuser("root@example.com", "root-password-1")
    client = Client()
    assert client.login(email="root@example.com", password="root-password-1")
    assert AuditEvent.objects.filter(action="staff.login").count() == 1
    assert client.get("/admin/accounts/auditevent/").status_code == 200
    event = AuditEvent.objects.get()
    assert client.get(f"/admin/accounts/auditevent/{event.pk}/delete/").status_code == 403


def test_limit_changes_are_audited(alice_api, acme) -> None:
    created = alice_api.post(
        "/api/limits",
        {"name": "monthly", "scope": "organization", "period": "month", "amount": "10.00"},
        format="json",
    )
    assert created.status_code == 201, created.content
    limit_id = created.json()["id"]
    alice_api.patch(f"/api/limits/{limit_id}", {"amount": "20.00"}, format="json")
    alice_api.delete(f"/api/limits/{limit_id}")
    events = list(AuditEvent.objects.order_by("id"))
    assert [e.action for e in events] == ["limit.created", "limit.changed", "limit.deleted"]
    assert events[1].summary["before"]["amount"].startswith("10")
    assert events[1].summary["after"]["amount"].startswith("20")
