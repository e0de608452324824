"""Give back budget reservations of calls that never settled (their process died).

Safe to run from cron every minute, even overlapping runs: each expired reservation is given
back exactly once (see providers.budget).

    * * * * *  cd /srv/gatehouse && .venv/bin/python manage.py sweep_reservations
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from providers.budget import sweep


class Command(BaseCommand):
    help = "Release expired budget reservations (calls whose process died before settling)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch", type=int, default=500, help="Reservations per transaction (default 500)."
        )

    def handle(self, *args: Any, batch: int, **options: Any) -> None:
        swept = sweep(batch=max(1, batch))
        noun = "reservation" if swept == 1 else "reservations"
        self.stdout.write(f"Released {swept} expired {noun}.")
