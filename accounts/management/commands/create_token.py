"""Issue a personal API token from the command line; the token alone is the last line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Membership
from accounts.tokens import token_issue


class Command(BaseCommand):
    help = "Issue an API token for EMAIL in an organisation; prints the token on its last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--org", dest="slug", default=None, help="organisation slug")
        parser.add_argument("--name", default="cli")

    def handle(self, *args: Any, **options: Any) -> None:
        memberships = Membership.objects.filter(user__email__iexact=options["email"])
        if options["slug"]:
            memberships = memberships.filter(organization__slug=options["slug"])
        found = list(memberships.select_related("organization")[:2])
        if not found:
            raise CommandError("No such user, or not a member of that organisation.")
        if len(found) > 1:
            raise CommandError("The user belongs to several organisations: pass --org SLUG.")
        issued = token_issue(membership=found[0], name=options["name"])
        self.stdout.write(f"Token for {options['email']} in {found[0].organization.slug}:")
        self.stdout.write(issued.secret)
