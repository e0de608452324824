"""Fixtures of the portal's browser tests: headless Chromium driven by Playwright, against the
live daphne server of `tests/e2e/conftest.py` (`live_daphne`, on the pytest-django test
database), and a small world built with the ordinary fixtures and models.

The tests are transactional: rows they commit are what the server sees, and they are flushed
after each test. Provider traffic goes to the upstream simulator (`sim_url`).

The browser is Debian's chromium (`/usr/bin/chromium`, installed by `make test` and `.ci/run`).
Without it the browser tests skip, except under REQUIRE_SERVICES=1 where they fail.

Test modules load this file by path (`tests/` is no package) and re-export its fixtures.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Membership, Organization, User
from accounts.services import organization_create
from providers.models import (
    CostPolicy,
    PriceOverride,
    ProviderCredential,
    SpendingLimit,
    UsageRecord,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STEP_TIMEOUT_MS = 15_000  # every Playwright step is bounded
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
# Where the screenshots go: the README's pictures only when asked (`make screenshots`), so that
# a test run leaves the checkout as it was; else a scratch directory.
SCREENSHOTS = Path(
    os.environ.get("GATEHOUSE_SCREENSHOTS") or Path(tempfile.gettempdir()) / "gatehouse-screenshots"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The users of tests/conftest.py and their passwords.
ALICE, ALICE_PASSWORD = "alice@example.com", "alice-password-1"  # owner of Acme, member of Beta
BOB, BOB_PASSWORD = "bob@example.com", "bob-password-1"  # member of Acme (over budget), owns Beta
PASSWORDS = {ALICE: ALICE_PASSWORD, BOB: BOB_PASSWORD}
BUDGET_LIMIT_NAME = "Bob's monthly allowance"
PRICED_MODELS = ("sim-gpt", "sim-gpt-mini", "sim-claude", "sim-claude-haiku")


# --- the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def portal_url(live_daphne: Any) -> str:
    """The live server's address, once it is known to serve the portal's static files (daphne
    serves none: config/asgi.py does when DEBUG is on or GATEHOUSE_SERVE_STATIC=1)."""
    url = live_daphne.url
    stylesheet = f"{url}/static/portal/portal.css"
    try:
        with urllib.request.urlopen(stylesheet, timeout=10) as answer:  # noqa: S310 - our server
            assert answer.status == 200
    except Exception as exc:  # any failure here means the same thing
        pytest.fail(f"the live server does not serve {stylesheet} ({exc}): see config/asgi.py")
    return url


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    acme: Organization
    beta: Organization
    alice: User
    bob: User
    credentials: dict[str, ProviderCredential]


def _prices(organization: Organization, providers: list[str]) -> None:
    for provider in providers:
        for model in PRICED_MODELS:
            PriceOverride.objects.create(
                organization=organization,
                provider=provider,
                model=model,
                input_per_mtok=Decimal("2.5"),
                output_per_mtok=Decimal("10"),
            )


def _limits(acme: Organization, bob_membership: Membership) -> None:
    SpendingLimit.objects.create(
        organization=acme, name="Team budget", scope="organization", period="month",
        amount=Decimal("50"), hard=True,
    )  # fmt: skip
    SpendingLimit.objects.create(
        organization=acme, name=BUDGET_LIMIT_NAME, scope="member", membership=bob_membership,
        period="month", amount=Decimal("0"), hard=True,
    )  # fmt: skip


def _beta(alice: User, bob: User, sim_url: str) -> Organization:
    """Beta (bob owns it, alice is a member) allows each member one request a minute."""
    beta = organization_create(name="Beta", slug="beta", owner=bob)
    Membership.objects.create(user=alice, organization=beta, role=Membership.Role.MEMBER)
    credential = ProviderCredential(
        organization=beta, name="Beta OpenAI", provider="openai", kind="openai",
        base_url=sim_url + "/openai/v1", default_model="sim-gpt",
    )  # fmt: skip
    credential.set_secret("sim-beta-key")
    credential.save()
    CostPolicy.objects.create(organization=beta, member_requests_per_minute=1)
    return beta


@pytest.fixture
def world(
    acme_credentials: dict,
    alice: User,
    bob: User,
    bob_membership: Membership,
    sim_url: str,
) -> World:
    """Acme (alice owner, bob member) with a credential of each kind on the simulator, prices
    for the simulator's models, an organisation limit and a hard monthly limit of 0 USD on bob;
    Beta for the organisation switcher and the rate limit."""
    acme = bob_membership.organization
    _prices(acme, ["openai", "anthropic"])
    _limits(acme, bob_membership)
    return World(acme, _beta(alice, bob, sim_url), alice, bob, acme_credentials)


@pytest.fixture
def ledger_history(world: World) -> None:
    """A fortnight of past calls, so the usage report has a chart to draw. Name it before
    `page_factory` in a test's arguments: it writes to the database, which must happen before
    the browser starts (see `browser`)."""
    rng = random.Random(7)
    now = timezone.now()
    rows = []
    for day in range(1, 15):
        for n in range(rng.randint(2, 9)):
            tokens_in, tokens_out = rng.randint(200, 3000), rng.randint(100, 1500)
            rows.append(
                UsageRecord(
                    request_id=f"history-{day}-{n}",
                    organization=world.acme,
                    user=(world.alice, world.bob)[n % 2],
                    provider="openai" if n % 3 else "anthropic",
                    model="sim-gpt" if n % 3 else "sim-claude",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    cost=(Decimal(tokens_in) * Decimal("2.5") + Decimal(tokens_out) * 10)
                    / Decimal(1_000_000),
                    price_source=UsageRecord.PriceSource.ORGANIZATION,
                    status="ok",
                    latency_ms=rng.randint(300, 4000),
                    ttft_ms=rng.randint(80, 600),
                    created_at=now - timedelta(days=day, hours=rng.randint(0, 8)),
                )
            )
    UsageRecord.objects.bulk_create(rows)


# --- the browser --------------------------------------------------------------------------------


def _chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"chromium is not installed ({CHROMIUM}); `make test` installs it with apt"
    return None


@pytest.fixture
def browser(world: World) -> Iterator[Any]:
    """Chromium, for one test. Playwright's sync API runs an event loop in this thread while it
    is open, and Django refuses ORM calls while one runs: so the browser starts after the
    test's data is written (it depends on `world`) and closes before the database is flushed."""
    problem = _chromium_missing()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class ConsoleWatch:
    """JavaScript errors of a page: console errors (CSP violations among them) and uncaught
    exceptions. Tests assert there are none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def page_factory(portal_url: str, world: World, browser: Any) -> Iterator[Any]:
    """`page_factory(email, viewport=...)`: a page signed in through the login form (or not,
    with None), and its console watch."""
    contexts: list[Any] = []

    def make(email: str | None = ALICE, *, viewport: dict | None = None) -> tuple[Any, Any]:
        context = browser.new_context(
            base_url=portal_url, viewport=viewport or {"width": 1280, "height": 860}
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        watch = ConsoleWatch(page)
        if email is not None:
            sign_in(page, email)
        return page, watch

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORDS[email])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/chats/")


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A whole page from its top, or (`full_page=False`) the window as it is scrolled: a chat
    is shown as a person sees it, with the composer stuck to the bottom of the window."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")
    path = SCREENSHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    assert path.read_bytes().startswith(PNG_SIGNATURE), f"{path} is not a PNG"
