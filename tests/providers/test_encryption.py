"""Secrets at rest: round trip, hints, and rotating the encryption keys."""

from __future__ import annotations

from io import StringIO

from cryptography.fernet import Fernet
from django.core.management import call_command

from providers import crypto
from tests.conftest import make_credential


def test_round_trip_and_hint(settings) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = crypto.encrypt("sk-live-abcdefghijkl1234")
    assert "abcdefghijkl" not in token
    assert crypto.decrypt(token) == "sk-live-abcdefghijkl1234"
    assert crypto.mask("sk-live-abcdefghijkl1234") == "sk-…1234"


def test_rotate_encryption_keys_moves_every_secret_once(settings, acme, sim_url) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.GATEHOUSE_ENCRYPTION_KEYS = [old]
    first = make_credential(acme, sim_url, "openai", api_key="sim-one-123456")
    second = make_credential(acme, sim_url, "anthropic", api_key="sim-two-123456")
    settings.GATEHOUSE_ENCRYPTION_KEYS = [new, old]
    assert not crypto.on_newest_key(first.secret_encrypted)
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Re-encrypted 2 secret(s)" in out.getvalue()
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Re-encrypted 0 secret(s)" in out.getvalue()
    settings.GATEHOUSE_ENCRYPTION_KEYS = [new]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.secret(), second.secret()) == ("sim-one-123456", "sim-two-123456")


def test_admin_counts_secrets_on_an_older_key(settings, acme, sim_url, admin_client) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.GATEHOUSE_ENCRYPTION_KEYS = [old]
    make_credential(acme, sim_url, "openai", api_key="sim-one-123456")
    settings.GATEHOUSE_ENCRYPTION_KEYS = [new, old]
    html = admin_client.get("/admin/providers/providercredential/").content.decode()
    assert '<strong id="secrets-on-old-key">1</strong>' in html
    assert "sim-one-123456" not in html
