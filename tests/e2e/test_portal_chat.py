"""The member's portal in a real browser: sign-in, chats, streaming, stop, model switch, model
output that tries to run script, the budget message, the organisation switcher, small screens."""

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

STREAM_WATCH = """() => {
  window.__lengths = [];
  const observer = new MutationObserver(() => {
    const node = document.querySelector('.msg-assistant[data-status="streaming"] .streaming-text');
    if (node) window.__lengths.push(node.textContent.length);
  });
  observer.observe(document.getElementById('messages'),
                   {subtree: true, childList: true, characterData: true});
}"""


def new_chat(page: Any) -> None:
    page.goto("/chats/")
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url(re.compile(r"/chats/\d+/$"))
    page.wait_for_selector("#send:not([disabled])")


def send(page: Any, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def last_answer(page: Any) -> Any:
    return page.locator("article.msg-assistant").last


def wait_status(page: Any, status: str) -> Any:
    answer = page.locator(f'article.msg-assistant[data-status="{status}"]').last
    answer.wait_for()
    return answer


def test_sign_in_and_sign_out(page_factory: Any) -> None:
    page, console = page_factory(None)
    page.goto("/chats/")
    page.wait_for_url("**/accounts/login/?next=/chats/")
    portal.sign_in(page, portal.ALICE)
    assert page.get_by_role("heading", name="Chats").is_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/login/")
    page.goto("/chats/")
    page.wait_for_url("**/accounts/login/**")
    assert console.errors == []


def test_answer_streams_in_steps_with_its_cost(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    page.evaluate(STREAM_WATCH)
    send(page, "Tell me a story sim:chunks=24 sim:delay=0.08")
    answer = wait_status(page, "complete")
    lengths = page.evaluate("window.__lengths")
    growth = sorted(set(lengths))
    assert len(growth) >= 3, lengths  # the answer grew in at least three steps before done
    assert lengths == sorted(lengths)
    assert re.search(r"\d+ in · \d+ out · \$0\.\d+", answer.inner_text())
    assert "openai / sim-gpt" in answer.inner_text()
    page.reload()
    assert page.locator("#chat-title").inner_text().startswith("Tell me a story")
    assert console.errors == []


def test_enter_sends_and_shift_enter_breaks_the_line(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line sim:echo")
    assert box.input_value() == "first line\nsecond line sim:echo"
    assert page.locator("article.msg-user").count() == 0
    box.press("Enter")
    wait_status(page, "complete")
    assert (
        page.locator("article.msg-user")
        .last.inner_text()
        .endswith("first line\nsecond line sim:echo")
    )
    assert box.input_value() == ""
    assert console.errors == []


def test_stop_ends_a_long_answer_and_keeps_what_was_written(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    send(page, "A very long answer please sim:chunks=400 sim:delay=0.05")
    streaming = page.locator('article.msg-assistant[data-status="streaming"] .streaming-text')
    page.wait_for_function(
        "() => (document.querySelector('.streaming-text')?.textContent.length || 0) > 20"
    )
    assert streaming.is_visible()
    page.get_by_role("button", name="Stop").click()
    answer = wait_status(page, "cancelled")
    assert "Stopped" in answer.inner_text()
    words = answer.locator(".msg-body").inner_text().split()
    assert 0 < len(words) < 400
    assert page.get_by_role("button", name="Stop").is_hidden()
    assert page.locator("#send").is_enabled()
    assert console.errors == []


def test_switching_model_is_used_and_remembered(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    page.get_by_label("Provider").select_option("anthropic")
    page.get_by_text("Saved for this chat.").wait_for()
    assert page.get_by_label("Model").input_value() == "sim-claude"
    page.get_by_label("Model").select_option("sim-claude-haiku")
    page.get_by_text("Saved for this chat.").wait_for()
    send(page, "Which model are you?")
    answer = wait_status(page, "complete")
    assert "anthropic / sim-claude-haiku" in answer.inner_text()
    page.reload()
    assert page.get_by_label("Provider").input_value() == "anthropic"
    assert page.get_by_label("Model").input_value() == "sim-claude-haiku"
    assert console.errors == []


def test_model_output_with_html_shows_as_text_and_runs_nothing(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    payload = (
        "sim:echo Look <img src=x onerror=\"window.__xss='img'\"> "
        "and <script>window.__xss='script'</script> and **bold**"
    )
    send(page, payload)
    answer = wait_status(page, "complete")
    text = answer.locator(".msg-body").inner_text()
    assert "<img src=x onerror=" in text
    assert "<script>window.__xss='script'</script>" in text
    assert answer.locator(".msg-body strong").inner_text() == "bold"  # Markdown still renders
    assert page.locator("#messages img").count() == 0
    assert page.locator("#messages script").count() == 0
    page.reload()  # the server-rendered history is as harmless
    wait_status(page, "complete")
    assert page.locator("#messages img, #messages script").count() == 0
    assert page.evaluate("window.__xss") is None
    assert console.errors == []


def test_member_over_budget_sees_which_limit_and_when_it_resets(page_factory: Any) -> None:
    page, console = page_factory(portal.BOB)
    new_chat(page)
    send(page, "Am I allowed?")
    alert = page.get_by_role("alert").filter(has_text="Budget reached")
    alert.wait_for()
    text = alert.inner_text()
    assert portal.BUDGET_LIMIT_NAME in text
    assert re.search(r"resets", text, re.IGNORECASE)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}|\d{1,2}:\d{2}", text)  # the reset time
    # Nothing was stored: the message is back in the box, ready to send later.
    assert page.locator("article.msg-user").count() == 0
    assert page.get_by_label("Message", exact=True).input_value() == "Am I allowed?"
    budget = page.locator("#budget").inner_text()
    assert "$0.00 left of $0.00" in budget
    assert console.errors == []


def test_unavailable_provider_is_explained_and_the_failed_answer_marked(
    page_factory: Any,
) -> None:
    page, console = page_factory()
    new_chat(page)
    send(page, "Are you there? sim:fault=503")
    page.get_by_role("alert").filter(has_text="Provider unavailable").wait_for()
    answer = wait_status(page, "error")
    assert "Failed" in answer.inner_text()
    assert "Provider unavailable" in answer.inner_text()
    assert console.errors == []


def test_interrupted_stream_keeps_the_partial_answer_marked(page_factory: Any) -> None:
    page, console = page_factory()
    new_chat(page)
    send(page, "Go on sim:fault=reset sim:after=4 sim:chunks=30 sim:delay=0.05")
    page.get_by_role("alert").filter(has_text="Answer interrupted").wait_for()
    answer = wait_status(page, "error")
    assert "Interrupted: partial answer" in answer.inner_text()
    assert len(answer.locator(".msg-body").inner_text().split()) == 4
    page.reload()  # kept and marked in the history too
    assert "Interrupted: partial answer" in wait_status(page, "error").inner_text()
    assert console.errors == []


def test_rate_limited_member_is_told_when_to_retry(page_factory: Any) -> None:
    page, console = page_factory(portal.BOB)
    with page.expect_navigation():
        page.get_by_label("Organisation").select_option("beta")
    new_chat(page)
    send(page, "First sim:chunks=3")
    wait_status(page, "complete")
    send(page, "Second")
    alert = page.get_by_role("alert").filter(has_text="Too many requests")
    alert.wait_for()
    assert re.search(r"again in \d+ s", alert.inner_text())
    assert page.locator("#send").is_disabled()
    assert re.match(r"Send \(\d+ s\)", page.locator("#send").inner_text())
    assert console.errors == []


def test_organisation_switcher_changes_the_organisation(page_factory: Any) -> None:
    page, console = page_factory()
    page.goto("/chats/")
    assert page.get_by_role("link", name="Credentials").is_visible()
    with page.expect_navigation():
        page.get_by_label("Organisation").select_option("beta")
    assert page.get_by_label("Organisation").input_value() == "beta"
    assert page.get_by_role("link", name="Credentials").count() == 0  # a member in Beta
    with page.expect_navigation():
        page.get_by_label("Organisation").select_option("acme")
    assert page.get_by_role("link", name="Credentials").is_visible()
    assert console.errors == []


@pytest.mark.parametrize(
    "path", ["/chats/", "/prompts/", "/tokens/", "/org/credentials/", "/org/usage/"]
)
def test_pages_fit_a_phone_screen_without_errors(page_factory: Any, path: str) -> None:
    page, console = page_factory(viewport={"width": 390, "height": 844})
    page.goto(path)
    page.wait_for_load_state("networkidle")
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{path} scrolls sideways by {overflow}px"
    assert console.errors == []


def test_chat_page_on_a_phone_can_send(page_factory: Any) -> None:
    page, console = page_factory(viewport={"width": 390, "height": 844})
    new_chat(page)
    send(page, "Hello from a phone sim:chunks=5")
    wait_status(page, "complete")
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1
    assert console.errors == []
