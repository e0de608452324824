"""Model bases shared by every app, and the one-row INSERT of the hot paths."""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


# --- the database's rules, without its session ---------------------------------------------


@functools.cache
def offline() -> BaseDatabaseWrapper:
    """A wrapper of the default database for what needs no session: `ops` (value adaptation,
    quoting, converters), `features`, `vendor`, and the `connection` argument of a field's
    preparation. Never connected; not for queries.

    Why not `django.db.connection`: on the event loop it is an asgiref `Local` kept in a
    context variable, so every task (each request, each socket) starts without a wrapper, and
    its first read builds one — features, ops, introspection — and every later read goes
    through the Local again. On a `/v1` call that was 4% of the server's CPU (py-spy,
    2026-12-07), for values that are the same for the whole process."""
    return connections.create_connection(DEFAULT_DB_ALIAS)


# --- one row, without the ORM's compile step ------------------------------------------------


@functools.cache
def _insert_sql(model: type[models.Model], vendor: str) -> tuple[str, tuple[Field, ...]]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    # Built from the model's own names only; every value is a parameter.
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING {pk}", fields  # noqa: S608


def insert_statement(instance: models.Model) -> tuple[str, list[object]]:
    """The INSERT of `insert_row` and its parameters, for a caller with its own connection
    (PostgreSQL: `config.apg`). The statement returns the new primary key."""
    database = offline()
    sql, fields = _insert_sql(type(instance), database.vendor)
    return sql, [f.get_db_prep_save(f.pre_save(instance, True), database) for f in fields]


def inserted(instance: models.Model, pk: object) -> None:
    """Mark `instance` saved with primary key `pk` (after `insert_statement` ran)."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS  # the only database; no proxy lookup per row


def insert_row(instance: models.Model) -> None:
    """INSERT `instance` and set its primary key, as `save(force_insert=True)` would, with the
    fields' own preparation (defaults, `auto_now_add`, adaptation to the database) but no
    queryset compile: on the per-call ledger write that compile cost more CPU than the
    statement. Sends no model signals. Raises `IntegrityError` as `save` does."""
    if not connection.features.can_return_columns_from_insert:  # SQLite before 3.35
        instance.save(force_insert=True)
        return
    sql, values = insert_statement(instance)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        inserted(instance, cursor.fetchone()[0])
