"""The portal's pages without a browser: tenant gates, admin gates, secrets never rendered,
sanitised Markdown, the Content-Security-Policy, and templates free of inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from accounts.models import AuditEvent, Membership, Organization, User
from accounts.tenancy import SESSION_KEY
from chats.models import Chat, Message
from chats.portal.budget import usd
from chats.portal.markdown import render_markdown
from providers.models import ProviderCredential, UsageRecord

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sim-portal-test-secret-5e8d1f0c"


@pytest.fixture
def alice_client(client: Client, alice: User, acme: Organization) -> Client:
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob: User, acme: Organization) -> Client:
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def charlie_client(charlie: User, other: Organization) -> Client:
    client = Client()
    client.force_login(charlie)
    return client


@pytest.fixture
def alice_chat(alice_membership: Membership) -> Chat:
    chat = Chat.objects.create(
        organization=alice_membership.organization, owner=alice_membership.user
    )
    Message.objects.create(chat=chat, role="user", content="hello")
    Message.objects.create(
        chat=chat, role="assistant", content="<script>alert(1)</script> **hi**", request_id="r1"
    )
    return chat


# --- Markdown -------------------------------------------------------------------------------


def test_markdown_shows_html_in_model_output_as_text() -> None:
    html = render_markdown('<img src=x onerror="alert(1)"> <script>alert(2)</script>')
    assert "<img" not in html and "<script" not in html
    assert "&lt;img src=x onerror=" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_markdown_keeps_code_blocks_and_drops_script_links() -> None:
    html = render_markdown(
        '```python\nif a < b: print("<b>")\n```\n\n[x](javascript:alert(1)) [ok](https://e.org)'
    )
    assert "<pre><code>if a &lt; b:" in html
    assert "javascript:" not in html
    assert '<a href="https://e.org" rel="noopener noreferrer nofollow">ok</a>' in html


def test_markdown_never_keeps_event_handlers_or_images() -> None:
    html = render_markdown("![t](https://tracker.example/p.png) <a href=x onclick=y>z</a>")
    assert "<img" not in html and "onclick=" not in html.replace("onclick=y", "")
    assert not re.search(r"<[^>]+\son\w+=", html)


def test_money_is_rounded_for_people_and_never_up_for_what_is_left() -> None:
    from decimal import ROUND_DOWN, Decimal

    assert usd(Decimal("4.9988725"), ROUND_DOWN) == "4.99"
    assert usd(Decimal("0.000365")) == "0.00037"
    assert usd(Decimal("0E-10")) == "0.00"
    assert usd(Decimal("50")) == "50.00"


# --- the policy and the templates ------------------------------------------------------------


def test_pages_carry_a_policy_that_forbids_inline_script(alice_client: Client) -> None:
    response = alice_client.get("/chats/")
    policy = response["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", policy).group(1)
    assert script_src.strip() == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_templates_have_no_inline_script_or_event_handlers() -> None:
    templates = ROOT / "templates"
    mine = [templates / "base.html", *templates.glob("registration/*.html")]
    for path in [*mine, *(templates / "portal").rglob("*.html")]:
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"inline script in {path}"
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text), f"event handler attribute in {path}"
        assert "style=" not in text, f"inline style in {path}"


def test_static_scripts_never_put_model_text_into_html() -> None:
    script = (ROOT / "static" / "portal" / "chat.js").read_text()
    # The one innerHTML is the server's sanitised rendering (data.html), never a frame's text.
    assignments = re.findall(r"\.innerHTML\s*=\s*([^;]+);", script)
    assert assignments == ["data.html", "data.html"]
    assert "insertAdjacentHTML" not in script and "document.write" not in script


# --- chats: gates ---------------------------------------------------------------------------


def test_chat_page_renders_answers_sanitised(alice_client: Client, alice_chat: Chat) -> None:
    response = alice_client.get(f"/chats/{alice_chat.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<strong>hi</strong>" in body
    assert "<script>alert(1)" not in body
    assert "<p>hello</p>" in body  # the member's own words, escaped once


def test_the_members_own_words_are_escaped(alice_client: Client, alice_chat: Chat) -> None:
    Message.objects.create(chat=alice_chat, role="user", content="<b>bold?</b>\nnext")
    body = alice_client.get(f"/chats/{alice_chat.pk}/").content.decode()
    assert "<p>&lt;b&gt;bold?&lt;/b&gt;<br>next</p>" in body


@pytest.mark.parametrize("who", ["bob_client", "charlie_client"])
def test_others_get_404_for_a_chat_and_its_messages(
    request: pytest.FixtureRequest, who: str, alice_chat: Chat
) -> None:
    client = request.getfixturevalue(who)
    message = alice_chat.messages.last()
    assert client.get(f"/chats/{alice_chat.pk}/").status_code == 404
    assert client.get(f"/chats/{alice_chat.pk}/messages/{message.pk}/html").status_code == 404
    assert client.post(f"/chats/{alice_chat.pk}/delete").status_code == 404
    assert client.post(f"/chats/{alice_chat.pk}/rename", {"title": "x"}).status_code == 404
    assert Chat.objects.filter(pk=alice_chat.pk, title="").exists()


def test_message_html_is_the_sanitised_rendering(alice_client: Client, alice_chat: Chat) -> None:
    message = alice_chat.messages.last()
    data = alice_client.get(f"/chats/{alice_chat.pk}/messages/{message.pk}/html").json()
    assert data["status"] == "complete"
    assert "<script>" not in data["html"] and "&lt;script&gt;" in data["html"]


def test_chat_list_rename_archive_delete(alice_client: Client, alice_chat: Chat) -> None:
    alice_client.post(f"/chats/{alice_chat.pk}/rename", {"title": "Plans"})
    assert "Plans" in alice_client.get("/chats/").content.decode()
    alice_client.post(f"/chats/{alice_chat.pk}/archive", {"archived": "1"})
    assert "Plans" not in alice_client.get("/chats/").content.decode()
    assert "Plans" in alice_client.get("/chats/?archived=1").content.decode()
    alice_client.post(f"/chats/{alice_chat.pk}/delete")
    assert not Chat.objects.filter(pk=alice_chat.pk).exists()


def test_chat_settings_refuse_an_unknown_model(
    alice_client: Client, alice_chat: Chat, acme_credentials: dict
) -> None:
    url = f"/chats/{alice_chat.pk}/settings"
    headers = {"Accept": "application/json"}
    good = alice_client.post(url, {"provider": "anthropic", "model": "sim-claude"}, headers=headers)
    assert good.json()["ok"] is True
    bad = alice_client.post(url, {"provider": "openai", "model": "no-such"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["code"] == "unknown_model"
    alice_chat.refresh_from_db()
    assert (alice_chat.default_provider, alice_chat.default_model) == ("anthropic", "sim-claude")


# --- organisation admin ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/org/members/", "/org/credentials/", "/org/limits/", "/org/usage/", "/org/usage.csv"]
)
def test_members_are_refused_the_admin_pages(bob_client: Client, path: str) -> None:
    response = bob_client.get(path)
    assert response.status_code == 403
    assert b"Admins only" in response.content


def test_admin_pages_of_another_organisation_are_404(
    alice_client: Client, other: Organization, sim_url: str
) -> None:
    theirs = ProviderCredential(organization=other, name="k", provider="openai", kind="openai")
    theirs.set_secret("sim-theirs")
    theirs.save()
    assert alice_client.get(f"/org/credentials/{theirs.pk}/").status_code == 404
    assert alice_client.post(f"/org/credentials/{theirs.pk}/toggle").status_code == 404
    charlie_membership = Membership.objects.get(organization=other)
    assert alice_client.post(f"/org/members/{charlie_membership.pk}/remove").status_code == 404


def test_credential_secret_is_never_rendered(alice_client: Client, sim_url: str) -> None:
    response = alice_client.post(
        "/org/credentials/",
        {
            "name": "Lab",
            "kind": "openai",
            "provider": "lab",
            "base_url": sim_url + "/openai/v1",
            "api_key": SECRET,
            "priority": 100,
        },
        follow=True,
    )
    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    credential = ProviderCredential.objects.get(name="Lab")
    assert credential.secret() == SECRET
    assert AuditEvent.objects.filter(action="credential.created", target_id=str(credential.pk))
    rotated = "sim-portal-rotated-7c2b9a4e"
    page = alice_client.post(
        f"/org/credentials/{credential.pk}/rotate", {"api_key": rotated}, follow=True
    ).content.decode()
    assert rotated not in page and SECRET not in page
    assert "rotated: now" in page
    credential.refresh_from_db()
    assert credential.version == 2 and credential.secret() == rotated
    for event in AuditEvent.objects.all():
        assert SECRET not in str(event.summary) and rotated not in str(event.summary)


def test_invalid_credential_form_does_not_echo_the_key(alice_client: Client) -> None:
    response = alice_client.post(
        "/org/credentials/", {"name": "", "kind": "openai", "api_key": SECRET, "priority": 1}
    )
    assert response.status_code == 400
    assert SECRET not in response.content.decode()


def _ledger_row(organization: Organization, user: User, request_id: str, **fields) -> None:
    UsageRecord.objects.create(
        request_id=request_id, organization=organization, user=user, provider="openai",
        status="ok", **fields,
    )  # fmt: skip


def test_usage_csv_quotes_what_a_spreadsheet_would_run(
    alice_client: Client, acme: Organization, alice: User
) -> None:
    _ledger_row(acme, alice, "r-csv", model="=HYPERLINK(1)", input_tokens=3, output_tokens=4)
    response = alice_client.get("/org/usage.csv")
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    assert "'=HYPERLINK(1)" in text and "r-csv" in text


def test_usage_page_groups_the_digits_of_large_counts(
    alice_client: Client, acme: Organization, alice: User
) -> None:
    _ledger_row(acme, alice, "r-big", model="sim-gpt", input_tokens=1234567, output_tokens=76543)
    text = alice_client.get("/org/usage/").content.decode()
    assert "1,234,567" in text and "76,543" in text  # the totals and the by-member row
    assert "1234567" not in text
    # The CSV stays machine-readable.
    assert "1234567" in alice_client.get("/org/usage.csv").content.decode()


# --- tokens and the switcher ----------------------------------------------------------------


def test_token_secret_is_shown_once_and_not_cached(alice_client: Client) -> None:
    response = alice_client.post("/tokens/", {"name": "cli", "expires_in": "30"})
    assert response["Cache-Control"] == "no-store"
    secret = re.search(r'value="(gh_[^"]+)"', response.content.decode()).group(1)
    assert secret not in alice_client.get("/tokens/").content.decode()


def test_switching_to_an_organisation_you_are_not_in_is_404(
    alice_client: Client, other: Organization
) -> None:
    assert alice_client.post("/org/switch", {"organization": "other"}).status_code == 404


def test_a_stale_organisation_in_the_session_is_forgotten(
    alice_client: Client, alice: User, other: Organization, acme: Organization
) -> None:
    session = alice_client.session
    session[SESSION_KEY] = other.slug  # as if alice had left Other since
    session.save()
    response = alice_client.get("/chats/")
    assert response.status_code == 200
    assert SESSION_KEY not in alice_client.session


def test_a_user_without_an_organisation_is_told_so(client: Client, db: None) -> None:
    client.force_login(User.objects.create_user("dora@example.com", "pw-dora-1"))
    response = client.get("/chats/")
    assert response.status_code == 403
    assert b"No organisation yet" in response.content
