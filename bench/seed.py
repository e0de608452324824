"""Seed one benchmark run: a fresh organisation, its owner, an API token and a credential that
points at the upstream simulator. Prints one JSON object on its last line.

Run by the bench driver with the same environment as the server it measures
(`python bench/seed.py --simulator-url http://127.0.0.1:PORT --run-id ID`). A new organisation
per run keeps rate counters, budgets and chat lists of earlier runs out of the measurement
without dropping a database someone else may be using.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from accounts.models import Membership, User  # noqa: E402
from accounts.services import organization_create  # noqa: E402
from accounts.tokens import token_issue  # noqa: E402
from providers.models import PriceOverride, ProviderCredential, SpendingLimit  # noqa: E402

SIMULATOR_KEY = "sim-bench-key"  # the simulator accepts any key starting with "sim-"
MODEL = "sim-gpt"
OTHER_PROVIDERS = [
    ("anthropic", ProviderCredential.Kind.ANTHROPIC, "/anthropic"),
    ("ollama", ProviderCredential.Kind.OLLAMA, "/ollama"),
]


def seed(*, simulator_url: str, run_id: str, member_limit: bool = False) -> dict[str, Any]:
    user = User.objects.create_user(f"bench-{run_id}@example.com")
    organization = organization_create(name=f"Bench {run_id}", slug=f"bench-{run_id}", owner=user)
    organization.default_provider, organization.default_model = "openai", MODEL
    organization.save(update_fields=["default_provider", "default_model"])
    membership = Membership.objects.get(user=user, organization=organization)
    credential = ProviderCredential(
        organization=organization,
        name="Bench simulator",
        provider="openai",
        kind=ProviderCredential.Kind.OPENAI,
        base_url=simulator_url.rstrip("/") + "/openai/v1",
        default_model=MODEL,
    )
    credential.set_secret(SIMULATOR_KEY)
    credential.save()
    # Organisations keep keys of several providers; calls go to the first one only, but routing
    # must not pay for the others (it once read every credential's model list on every call).
    for provider, kind, path in OTHER_PROVIDERS:
        other = ProviderCredential(
            organization=organization,
            name=f"Bench {provider}",
            provider=provider,
            kind=kind,
            base_url=simulator_url.rstrip("/") + path,
        )
        other.set_secret(SIMULATOR_KEY)
        other.save()
    # Every measured call is admitted as in a budgeted organisation: a price, and a hard monthly
    # limit the run never reaches, so each call reserves its worst case, and settles it.
    PriceOverride.objects.create(
        organization=organization,
        provider="openai",
        model=MODEL,
        input_per_mtok=Decimal("2.50"),
        output_per_mtok=Decimal("10.00"),
    )
    SpendingLimit.objects.create(
        organization=organization,
        name="bench",
        scope=SpendingLimit.Scope.ORGANIZATION,
        period=SpendingLimit.Period.MONTH,
        amount=Decimal("1000000"),
        hard=True,
    )
    if member_limit:  # `--member-limit`: a member budget too, as budgeted organisations have
        SpendingLimit.objects.create(
            organization=organization,
            name="bench member",
            scope=SpendingLimit.Scope.MEMBER,
            membership=membership,
            period=SpendingLimit.Period.MONTH,
            amount=Decimal("1000000"),
            hard=True,
        )
    issued = token_issue(membership=membership, name="bench")
    return {
        "organization": organization.slug,
        "email": user.email,
        "token": issued.secret,
        "credential_id": credential.pk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--simulator-url", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--member-limit", action="store_true")
    args = parser.parse_args()
    seeded = seed(
        simulator_url=args.simulator_url, run_id=args.run_id, member_limit=args.member_limit
    )
    print(json.dumps(seeded))


if __name__ == "__main__":
    main()
