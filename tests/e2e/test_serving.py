"""The launcher production uses, `python -m config.serve`: daphne on uvloop's event loop, with
Twisted's own form parsing switched off (config.daphne_tuning). Forms must still reach Django
whole, in both encodings a browser sends."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_live_server_runs_on_uvloop(live_daphne) -> None:
    maps = Path(f"/proc/{live_daphne.process.pid}/maps").read_text()
    assert "uvloop" in maps


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_a_sign_in_form_reaches_django_whole(
    live_daphne, alice_membership, multipart: bool
) -> None:
    with httpx.Client(base_url=live_daphne.url, trust_env=False, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:300]
        fields = {
            "csrfmiddlewaretoken": token.group(1),
            "username": "alice@example.com",
            "password": "alice-password-1",
        }
        # A file part makes httpx send multipart/form-data; the login form ignores it.
        files = {"note": ("note.txt", b"not read")} if multipart else None
        answer = client.post("/accounts/login/", data=fields, files=files)
        assert answer.status_code == 302, answer.text[:300]
        assert answer.headers["location"] == "/"
        assert client.get("/chats/").status_code == 200  # signed in


def test_a_wrong_password_in_a_form_is_refused(live_daphne, alice_membership) -> None:
    with httpx.Client(base_url=live_daphne.url, trust_env=False, timeout=10) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        fields = {"csrfmiddlewaretoken": token, "username": "alice@example.com", "password": "x"}
        answer = client.post("/accounts/login/", data=fields)
        assert answer.status_code == 200
        assert client.get("/chats/").status_code == 302
