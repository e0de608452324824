"""Secrets at rest: Fernet with a list of keys, newest first (MultiFernet).

`GATEHOUSE_ENCRYPTION_KEYS` holds the keys. New secrets are encrypted with the first; any key in
the list decrypts. Rotation: put a new key first, then `manage.py rotate_encryption_keys`
re-encrypts every secret with it, after which the old key can be dropped. With DEBUG on and no
key set, settings derive one from SECRET_KEY so development needs no set-up.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _configured_keys() -> tuple[str, ...]:
    # settings.py derives a development key when DEBUG is on and none is set.
    keys = tuple(k.strip() for k in settings.GATEHOUSE_ENCRYPTION_KEYS if k.strip())
    if not keys:
        raise ImproperlyConfigured("GATEHOUSE_ENCRYPTION_KEYS is not set.")
    return keys


@lru_cache(maxsize=4)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    try:
        fernets = [Fernet(key) for key in keys]
    except ValueError:
        raise ImproperlyConfigured(
            "GATEHOUSE_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from None
    return MultiFernet(fernets), fernets[0]


def _multi() -> tuple[MultiFernet, Fernet]:
    return _fernets(_configured_keys())


def encrypt(plaintext: str) -> str:
    return _multi()[0].encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _multi()[0].decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key in GATEHOUSE_ENCRYPTION_KEYS."
        ) from None


def on_newest_key(token: str) -> bool:
    try:
        _multi()[1].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """The same secret encrypted with the newest key."""
    return _multi()[0].rotate(token.encode()).decode()


def generate_key() -> str:
    return Fernet.generate_key().decode()


def mask(secret: str) -> str:
    """A hint to recognise a key by, never enough to use it: `sk-…abcd`."""
    if len(secret) >= 12:
        return f"{secret[:3]}…{secret[-4:]}"
    return "…" + secret[-2:] if len(secret) > 4 else "…"
