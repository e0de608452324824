"""Create (or refresh) the demo organisation and its owner. Safe to run again and again."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Membership, Organization, User

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "gatehouse-demo"  # noqa: S105 - a published demo login, refused in production
DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo organisation and owner (idempotent) and print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default=DEMO_EMAIL)
        parser.add_argument("--password", default=DEMO_PASSWORD)
        parser.add_argument(
            "--simulator-url",
            default="",
            help="Base URL of the upstream simulator to give the demo organisation credentials "
            "for (default: the in-process mount at http://127.0.0.1:$PORT/_simulator).",
        )
        parser.add_argument("--port", default="8000")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo only runs with DEBUG on: it sets a known password.")
        user, _ = User.objects.get_or_create(email=options["email"])
        user.set_password(options["password"])
        user.is_staff = user.is_superuser = True
        user.save()
        organization, _ = Organization.objects.get_or_create(
            slug=DEMO_SLUG, defaults={"name": "Demo Organisation"}
        )
        Membership.objects.update_or_create(
            user=user, organization=organization, defaults={"role": Membership.Role.OWNER}
        )
        simulator = options["simulator_url"] or f"http://127.0.0.1:{options['port']}/_simulator"
        self._demo_extras(organization, simulator)
        self.stdout.write(f"Demo organisation: {organization.name} ({organization.slug})")
        self.stdout.write(f"Login: {options['email']} / {options['password']}")

    def _demo_extras(self, organization: Organization, simulator_url: str) -> None:
        """Later layers (credentials, limits) hook their demo data in here."""
        try:
            from providers.demo import demo_credentials_ensure
        except ImportError:
            return
        for line in demo_credentials_ensure(organization=organization, base_url=simulator_url):
            self.stdout.write(line)
