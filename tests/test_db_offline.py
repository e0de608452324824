"""config.db.offline: the default database's rules (adaptation, quoting, converters) without a
session, the same as the session's connection gives them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection

from accounts.models import ApiToken
from config.db import offline


def test_it_adapts_and_quotes_as_the_sessions_connection_does() -> None:
    database = offline()
    assert database.vendor == connection.vendor
    moment = datetime(2026, 12, 7, 21, 0, 5, 123456, tzinfo=UTC)
    for value in (moment, None):
        assert database.ops.adapt_datetimefield_value(
            value
        ) == connection.ops.adapt_datetimefield_value(value)
    assert database.ops.adapt_decimalfield_value(
        Decimal("1.23456"), 12, 4
    ) == connection.ops.adapt_decimalfield_value(Decimal("1.23456"), 12, 4)
    assert database.ops.quote_name("chats_chat") == connection.ops.quote_name("chats_chat")
    field = ApiToken._meta.get_field("created_at")
    assert len(field.get_db_converters(database)) == len(field.get_db_converters(connection))


def test_it_is_one_wrapper_that_never_connects() -> None:
    assert offline() is offline()
    offline().ops.adapt_datetimefield_value(datetime.now(UTC))
    assert offline().connection is None
