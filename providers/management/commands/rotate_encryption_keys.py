"""Re-encrypt every stored secret with the newest key of GATEHOUSE_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.audit import audit_record
from accounts.models import AuditEvent
from providers import crypto
from providers.models import ProviderCredential


class Command(BaseCommand):
    help = "Re-encrypt every provider secret with the newest encryption key (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        moved = 0
        with transaction.atomic():
            for credential in ProviderCredential.objects.select_for_update().order_by("pk"):
                if crypto.on_newest_key(credential.secret_encrypted):
                    continue
                credential.secret_encrypted = crypto.reencrypt(credential.secret_encrypted)
                credential.save(update_fields=["secret_encrypted"])
                moved += 1
            audit_record(
                action=AuditEvent.Action.ENCRYPTION_KEYS_ROTATED,
                organization=None,
                extra={"moved": moved},
            )
        self.stdout.write(f"Re-encrypted {moved} secret(s) with the newest key.")
