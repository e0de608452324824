"""A logging filter that masks anything shaped like a secret before a record is written.

Defence in depth: code never logs a key on purpose, but SDK exceptions and upstream bodies can
echo one back, and a leaked key in a log is as bad as one in a response.
"""

from __future__ import annotations

import logging
import re

_SECRET_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|gh_[A-Za-z0-9]{6,}_[A-Za-z0-9_\-]{6,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}|(?i:x-api-key)[\"':= ]+[A-Za-z0-9._\-]{8,})"
)


def redact(text: str) -> str:
    return _SECRET_PATTERNS.sub("[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
