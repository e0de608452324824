"""Organisation admin pages in a real browser — credentials without their secrets, members,
limits, the usage report — plus tokens, prompts, and the screenshots of the README."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest


def _load_fixtures() -> Any:
    name = "portal_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


portal = _load_fixtures()
portal_url = portal.portal_url
browser = portal.browser
world = portal.world
ledger_history = portal.ledger_history
page_factory = portal.page_factory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NEW_SECRET = "sim-e2e-first-secret-4f7a9c21d3"
ROTATED_SECRET = "sim-e2e-rotated-secret-8b2e6d90aa"


def assert_secret_absent(page: Any, *secrets: str) -> None:
    """Neither in the markup (inputs' values included) nor in the visible text."""
    html = page.content()
    values = page.evaluate("() => [...document.querySelectorAll('input')].map(i => i.value)")
    for secret in secrets:
        assert secret not in html
        assert secret not in page.inner_text("body")
        assert secret not in values
        assert secret[-8:] not in html  # not even a long tail of it


def test_admin_adds_tests_and_rotates_a_credential_without_seeing_its_secret(
    sim_url: str, page_factory: Any
) -> None:
    page, console = page_factory()
    page.goto("/org/credentials/")
    form = page.locator("form", has=page.get_by_role("button", name="Add credential"))
    form.get_by_label("Name").fill("Research key")
    form.get_by_label("Kind").select_option("openai")
    form.get_by_label("Provider").fill("research")
    form.get_by_label("Base URL").fill(sim_url + "/openai/v1")
    form.get_by_label("API key").fill(NEW_SECRET)
    form.get_by_role("button", name="Add credential").click()
    page.get_by_text("Credential “Research key” added").wait_for()
    assert_secret_absent(page, NEW_SECRET)
    card = page.locator("li.cred", has_text="Research key")
    hint = card.locator(".key-hint").inner_text()
    assert hint.endswith(NEW_SECRET[-4:]) and len(hint) < 12

    card.get_by_role("button", name="Test").click()
    page.get_by_text("“Research key” works").wait_for()

    card = page.locator("li.cred", has_text="Research key")
    card.locator("summary", has_text="Rotate key").click()
    card.get_by_label("New API key").fill(ROTATED_SECRET)
    card.get_by_role("button", name="Test and rotate").click()
    page.get_by_text("Key of “Research key” rotated").wait_for()
    card = page.locator("li.cred", has_text="Research key")
    assert card.locator(".key-hint").inner_text().endswith(ROTATED_SECRET[-4:])
    assert "v2" in card.inner_text()
    assert_secret_absent(page, NEW_SECRET, ROTATED_SECRET)

    card.get_by_role("button", name="Disable").click()
    page.get_by_text("Credential “Research key” disabled").wait_for()
    page.get_by_role("link", name="Research key").click()
    assert_secret_absent(page, NEW_SECRET, ROTATED_SECRET)
    assert console.errors == []


def test_rotation_with_a_failing_key_keeps_the_old_one(page_factory: Any) -> None:
    page, console = page_factory()
    page.goto("/org/credentials/")
    card = page.locator("li.cred", has_text="openai key")
    before = card.locator(".key-hint").inner_text()
    card.locator("summary", has_text="Rotate key").click()
    card.get_by_label("New API key").fill("not-a-simulator-key-123456")
    card.get_by_role("button", name="Test and rotate").click()
    page.get_by_text("The new key failed its live test").wait_for()
    assert page.locator("li.cred", has_text="openai key").locator(".key-hint").inner_text() == (
        before
    )
    assert_secret_absent(page, "not-a-simulator-key-123456")
    assert console.errors == []


def test_admin_invites_changes_role_and_removes_a_member(page_factory: Any) -> None:
    page, console = page_factory()
    page.goto("/org/members/")
    page.get_by_label("Email").fill("dora@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Invite").click()
    page.get_by_text("dora@example.com was added.").wait_for()
    row = page.locator("tr", has_text="dora@example.com")
    row.get_by_label("Role of dora@example.com").select_option("admin")
    row.get_by_role("button", name="Change role of dora@example.com").click()
    page.get_by_text("dora@example.com is now admin.").wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="dora@example.com").get_by_role("button", name="Remove").click()
    page.get_by_text("dora@example.com was removed.").wait_for()
    assert page.locator("tr", has_text="dora@example.com").count() == 0
    assert console.errors == []


def test_admin_adds_a_limit_and_reads_the_usage_report(
    ledger_history: None, page_factory: Any
) -> None:
    page, console = page_factory()
    page.goto("/org/limits/")
    form = page.locator("form", has=page.get_by_role("button", name="Add limit"))
    form.get_by_label("Name").fill("Daily cap")
    form.get_by_label("Scope").select_option("organization")
    form.get_by_label("Period").select_option("day")
    form.get_by_label("Amount (USD)").fill("5")
    form.get_by_role("button", name="Add limit").click()
    page.get_by_text("Spending limit added.").wait_for()
    assert page.locator("tr", has_text="Daily cap").is_visible()
    assert page.locator("tr", has_text=portal.BUDGET_LIMIT_NAME).is_visible()

    page.goto("/org/usage/")
    assert page.locator("svg.chart-svg rect.bar").count() == 30
    assert re.match(r"\$\d+\.\d+", page.get_by_test_id("total-cost").inner_text())
    response = page.request.get("/org/usage.csv")
    assert response.ok and response.headers["content-type"].startswith("text/csv")
    lines = response.text().splitlines()
    assert lines[0].startswith("created_at,request_id,user,provider,model")
    assert len(lines) > 10
    assert console.errors == []


def test_members_get_no_admin_pages(page_factory: Any) -> None:
    page, console = page_factory(portal.BOB)
    for path in ("/org/credentials/", "/org/members/", "/org/limits/", "/org/usage/"):
        response = page.goto(path)
        assert response.status == 403
        assert page.get_by_role("heading", name="Admins only").is_visible()
    assert page.get_by_role("link", name="Credentials").count() == 0
    assert console.errors == [] or all("403" in error for error in console.errors)


def test_token_secret_is_shown_once_and_can_be_revoked(page_factory: Any) -> None:
    page, console = page_factory()
    page.goto("/tokens/")
    page.get_by_label("Name").fill("CI job")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("issued-token").input_value()
    assert re.match(r"^gh_[a-z0-9]{10}_\S{20,}$", secret)
    page.goto("/tokens/")
    assert secret not in page.content()
    row = page.locator("tr", has_text="CI job")
    assert secret.split("_")[1] in row.inner_text()  # the prefix identifies it
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    page.get_by_text("Token “CI job” revoked.").wait_for()
    assert "revoked" in page.locator("tr", has_text="CI job").inner_text()
    assert console.errors == []


def test_personal_prompt_is_used_by_a_new_chat(page_factory: Any) -> None:
    page, console = page_factory()
    page.goto("/prompts/")
    page.get_by_label("Name").fill("Pirate")
    page.get_by_label("Content").fill("Answer like a pirate.")
    page.get_by_role("button", name="Save prompt").click()
    page.get_by_text("System prompt saved.").wait_for()
    page.get_by_role("link", name="Edit Pirate").click()
    page.get_by_label("Content").fill("Answer like a polite pirate.")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("System prompt saved.").wait_for()
    page.goto("/chats/")
    page.get_by_label("System prompt").select_option(label="Pirate")
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url(re.compile(r"/chats/\d+/$"))
    page.locator("details.system-prompt summary").click()
    assert page.get_by_label("This chat's system prompt").input_value() == (
        "Answer like a polite pirate."
    )
    assert console.errors == []


def test_screenshots_of_the_main_pages(ledger_history: None, page_factory: Any) -> None:
    """The pictures in the README, taken from the real pages."""
    page, console = page_factory(None)
    page.goto("/accounts/login/")
    portal.screenshot(page, "login")
    portal.sign_in(page, portal.ALICE)
    page.get_by_role("button", name="New chat").click()
    page.wait_for_selector("#send:not([disabled])")
    box = page.get_by_label("Message", exact=True)
    box.fill(
        "sim:echo Here is how to *stream* a chat over the socket:\n\n"
        '```python\nawait ws.send_json({"type": "message", "content": "Hi"})\n```\n\n'
        "- tokens arrive as `token` frames\n- `done` carries usage and cost"
    )
    box.press("Enter")
    page.locator('article.msg-assistant[data-status="complete"]').wait_for()
    box.fill("And a longer answer sim:chunks=60 sim:delay=0.02")
    box.press("Enter")
    page.locator('article.msg-assistant[data-status="complete"]').nth(1).wait_for()
    page.locator(".chat-head summary", has_text="Rename").click()
    page.get_by_label("New title").fill("Streaming over WebSockets")
    page.locator(".chat-head").get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Streaming over WebSockets").wait_for()
    page.set_viewport_size({"width": 1280, "height": 1350})
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    portal.screenshot(page, "chat", full_page=False)
    page.goto("/chats/")
    portal.screenshot(page, "chats")
    for path, name in (
        ("/org/credentials/", "credentials"),
        ("/org/limits/", "limits"),
        ("/org/usage/", "usage"),
        ("/org/members/", "members"),
        ("/prompts/", "prompts"),
        ("/tokens/", "tokens"),
    ):
        page.goto(path)
        portal.screenshot(page, name)
    phone, _ = page_factory(viewport={"width": 390, "height": 844})
    phone.goto("/chats/")
    phone.locator("a.chat-title").first.click()
    phone.locator('article.msg-assistant[data-status="complete"]').first.wait_for()
    phone.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    portal.screenshot(phone, "chat-phone", full_page=False)
    budget, _ = page_factory(portal.BOB)
    budget.get_by_role("button", name="New chat").click()
    budget.wait_for_selector("#send:not([disabled])")
    budget.get_by_label("Message", exact=True).fill("Can I ask one more question?")
    budget.get_by_label("Message", exact=True).press("Enter")
    budget.get_by_role("alert").filter(has_text="Budget reached").wait_for()
    portal.screenshot(budget, "budget-exceeded")
    assert console.errors == []
