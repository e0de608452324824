"""Spending-limit counters: reserve, settle, release, sweep — exact across processes.

Each limit has one counter row per period (`SpendingCounter`, unique on (limit, period_start)),
holding `spent` (settled cost) and `reserved` (worst-case cost of calls in flight). A new period
simply gets a new row on first use, so nothing ever has to reset counters.

The invariant, for every hard limit and period: `spent + reserved <= amount` is never broken by
an admission. Each reservation is one conditional UPDATE of a counter row:

    UPDATE counter SET reserved = reserved + :cost
    WHERE limit_id = :limit AND period_start = :start AND spent + reserved + :cost <= :amount

The condition is evaluated on the row the UPDATE locks (PostgreSQL re-checks it against the
latest committed version when another transaction changed the row first), so no interleaving of
any number of processes can pass the limit; SQLite serialises writers (IMMEDIATE transactions).
All counters of one call are updated in one transaction, all or nothing, in the fixed order
(limit id, period start) — every writer here takes row locks in that order, so writers never
deadlock. A `Reservation` row per (request, counter) records what to give back. On PostgreSQL
the whole reservation is one statement (`_RESERVE_ALL_SQL`: lock the counters in that order,
check every one, then update them all or none), and so is a settlement (`settle_statement`).

Settlement (in the caller's transaction, with the ledger row) removes the call's reservations
and adds the real cost to the counters of the period the call ended in. Release gives back the
reservations of a call that never reached a provider. Reservations of calls whose process died
expire: `sweep` (run by `manage.py sweep_reservations`) gives them back. Settle, release and
sweep all start by deleting the reservation rows they act on, under a row lock, so a
reservation is given back exactly once whichever of them gets to it first.

Real cost may exceed the reservation (input tokens are estimated at admission), and is always
recorded: the ledger tells the truth, and the counter then refuses further calls.

Raw SQL is used where the ORM cannot return the updated row (UPDATE … RETURNING, supported by
PostgreSQL and SQLite ≥ 3.35); money parameters are CAST to NUMERIC so that SQLite compares
numbers, not text.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organization
from config import apg
from config.db import offline
from providers.models import Reservation, SpendingCounter, SpendingLimit
from providers.periods import period_bounds
from providers.prices import QUANTUM

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LimitRef:
    """What admission and settlement need of a `SpendingLimit`, detached from the ORM."""

    id: int
    name: str
    scope: str
    membership_id: int | None
    credential_id: int | None
    period: str
    amount: Decimal
    hard: bool
    thresholds: tuple[int, ...]

    @classmethod
    def of(cls, limit: SpendingLimit) -> LimitRef:
        return cls(
            id=limit.pk,
            name=limit.name,
            scope=limit.scope,
            membership_id=limit.membership_id,
            credential_id=limit.credential_id,
            period=limit.period,
            amount=limit.amount,
            hard=limit.hard,
            thresholds=tuple(sorted(limit.alert_thresholds or ())),
        )

    def describe(self) -> str:
        """ "the organisation's monthly hard limit 'Team' (100.00 USD)" — for error messages."""
        owner = {
            SpendingLimit.Scope.ORGANIZATION: "the organisation's",
            SpendingLimit.Scope.MEMBER: "your",
            SpendingLimit.Scope.CREDENTIAL: "the credential's",
        }[self.scope]
        period = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}
        label = f" '{self.name}'" if self.name else ""
        kind = "hard" if self.hard else "soft"
        return f"{owner} {period[self.period]} {kind} limit{label} ({money(self.amount)} USD)"


@dataclass(frozen=True, slots=True)
class Slot:
    """One limit in one period: the key of a counter row."""

    limit: LimitRef
    start: datetime
    end: datetime | None

    @property
    def key(self) -> tuple[int, datetime]:
        return (self.limit.id, self.start)


@dataclass(frozen=True, slots=True)
class Charged:
    """A counter after settlement moved it, for the alert check."""

    counter_id: int
    slot: Slot
    spent: Decimal
    alert_level: int


class BudgetExceeded(Exception):
    """The call's worst-case cost does not fit under `slot`'s hard limit."""

    def __init__(self, slot: Slot, needed: Decimal) -> None:
        self.slot = slot
        self.needed = needed
        super().__init__(f"limit {slot.limit.id} has no room for {needed}")


def money(value: Decimal) -> str:
    """A Decimal for people: cents when that is exact, else every significant digit."""
    cents = value.quantize(Decimal("0.01"))
    return str(cents) if cents == value else f"{value.normalize():f}"


def slots_for(limits: Iterable[LimitRef], *, now: datetime, tz: str) -> list[Slot]:
    """The current-period counter keys of `limits`, in lock order."""
    slots = [Slot(limit, *period_bounds(limit.period, now, tz)) for limit in limits]
    return sorted(slots, key=lambda slot: slot.key)


def reservation_ttl() -> float:
    """Seconds before an unsettled reservation may be swept: longer than any call can last."""
    configured = getattr(settings, "GATEHOUSE_RESERVATION_TTL", None)
    if configured:
        return float(configured)
    return max(600.0, 2 * float(getattr(settings, "GATEHOUSE_TIMEOUT_TOTAL", 300.0)))


# --- SQL helpers ----------------------------------------------------------------------------

# Built from constants only (the table name and fixed text); every value is a parameter.
_NUM = "CAST(%s AS NUMERIC)"
_COUNTERS = SpendingCounter._meta.db_table
_RESERVE_SQL = (
    f"UPDATE {_COUNTERS} SET reserved = reserved + {_NUM} "  # noqa: S608
    f"WHERE limit_id = %s AND period_start = %s AND spent + reserved + {_NUM} <= {_NUM} "
    "RETURNING id"
)
# PostgreSQL, any number of slots whose counters exist: the whole reservation in one statement,
# atomic by itself, instead of 2 + N round trips (BEGIN, an UPDATE per slot, INSERT, COMMIT) and
# a thread hop. `locked` takes the counters' row locks in the fixed (limit id, period start)
# order, as every writer does: the sort runs below the lock, and a row changed meanwhile is read
# again at its latest version once its lock is granted, so `fits` judges what is really there.
# Only when every slot's counter was found and fits does `held` add the amount (all or nothing);
# no row back means no room or no counter yet, and the general path below tells which. One text
# per number of slots (`_reserve_all_sql`), each prepared by PostgreSQL after a few uses; plain
# parameters, not arrays, which cost psycopg about 30 µs more to send.
_RESERVE_ALL_SQL = """
    WITH want (limit_id, period_start, amount) AS (VALUES {want}),
    locked AS (
        SELECT c.id, c.spent + c.reserved + {num} <= w.amount AS fits
        FROM {counters} c JOIN want w
          ON c.limit_id = w.limit_id AND c.period_start = w.period_start
        ORDER BY c.limit_id, c.period_start
        FOR UPDATE OF c
    ),
    held AS (
        UPDATE {counters} c SET reserved = c.reserved + {num}
        FROM locked l
        WHERE c.id = l.id AND (SELECT count(*) = {n} AND bool_and(fits) FROM locked)
        RETURNING c.id
    )
    INSERT INTO {reservations} (request_id, counter_id, amount, created_at, expires_at)
    SELECT %s, id, {num}, %s, %s FROM held RETURNING counter_id"""
_SLOT_ROW = f"(CAST(%s AS bigint), CAST(%s AS timestamptz), {_NUM})"


# One slot: the conditional UPDATE alone locks and checks its one row (same parameters).
_RESERVE_ONE_SQL = """
    WITH want (limit_id, period_start, amount) AS (VALUES {want}),
    held AS (
        UPDATE {counters} c SET reserved = c.reserved + {num}
        FROM want w
        WHERE c.limit_id = w.limit_id AND c.period_start = w.period_start
          AND c.spent + c.reserved + {num} <= w.amount
        RETURNING c.id
    )
    INSERT INTO {reservations} (request_id, counter_id, amount, created_at, expires_at)
    SELECT %s, id, {num}, %s, %s FROM held RETURNING counter_id"""


@functools.cache
def _reserve_all_sql(n: int) -> str:
    return (_RESERVE_ONE_SQL if n == 1 else _RESERVE_ALL_SQL).format(
        want=", ".join([_SLOT_ROW] * n),
        num=_NUM,
        n=n,
        counters=_COUNTERS,
        reservations=Reservation._meta.db_table,
    )


_MOVE_SQL = (
    f"UPDATE {_COUNTERS} SET spent = spent + {_NUM}, reserved = reserved - {_NUM} "  # noqa: S608
    "WHERE {where} RETURNING id, spent, alert_level"
)
_BY_ID = "id = %s"
# PostgreSQL reads and deletes a call's reservations in one statement (DELETE locks the rows
# as SELECT … FOR UPDATE would: a concurrent taker waits, then finds nothing).
_TAKE_SQL = (
    f"DELETE FROM {Reservation._meta.db_table} r USING {_COUNTERS} c "  # noqa: S608
    "WHERE r.request_id = %s AND c.id = r.counter_id "
    "RETURNING r.id, r.counter_id, r.amount, c.limit_id, c.period_start"
)
_TAKEN = ("id", "counter_id", "amount", "counter__limit_id", "counter__period_start")
_BY_KEY = "limit_id = %s AND period_start = %s"


def _dt(value: datetime | None) -> Any:
    # Raw parameters bypass the ORM's datetime adaptation (SQLite stores naive UTC text).
    return offline().ops.adapt_datetimefield_value(value)


def _money(value: Any) -> Decimal:
    # SQLite hands NUMERIC columns back as int or float.
    if not isinstance(value, Decimal):
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return value.quantize(QUANTUM)


def _fetchone(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _ensure_counters(slots: Sequence[Slot]) -> set[int]:
    """Create the missing counter rows of `slots` (race-free: INSERT … ON CONFLICT DO NOTHING)
    and return the ids of the limits that still exist; a limit deleted meanwhile no longer
    applies."""
    alive = set(
        SpendingLimit.objects.filter(id__in=[s.limit.id for s in slots]).values_list(
            "id", flat=True
        )
    )
    SpendingCounter.objects.bulk_create(
        [
            SpendingCounter(limit_id=s.limit.id, period_start=s.start, period_end=s.end)
            for s in slots
            if s.limit.id in alive
        ],
        ignore_conflicts=True,
    )
    return alive


# --- reserve --------------------------------------------------------------------------------


def _reserve_one(slot: Slot, amount: Decimal) -> int | None:
    """Add `amount` to the slot's reservations if it fits; the counter id, or None when it does
    not fit or the row does not exist yet."""
    row = _fetchone(
        _RESERVE_SQL, [amount, slot.limit.id, _dt(slot.start), amount, slot.limit.amount]
    )
    return None if row is None else row[0]


def _reserve_or_create(slot: Slot, amount: Decimal) -> int | None:
    counter_id = _reserve_one(slot, amount)
    if counter_id is not None:
        return counter_id
    if slot.limit.id not in _ensure_counters([slot]):
        return 0  # the limit was deleted meanwhile: it no longer applies, nothing to hold
    return _reserve_one(slot, amount)


def reserve(
    *, request_id: str, slots: Sequence[Slot], amount: Decimal, expires_at: datetime
) -> list[int]:
    """Reserve `amount` on every slot, all or nothing; raises `BudgetExceeded` naming the first
    slot without room. Returns the counter ids reserved on."""
    if amount <= 0 or not slots:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _reserve_all_sql(len(slots)),
                _reserve_all_params(request_id, slots, amount, expires_at),
            )
            held = [row[0] for row in cursor.fetchall()]
        if held:
            return held
    counters: list[int] = []
    with transaction.atomic():
        for slot in sorted(slots, key=lambda s: s.key):
            counter_id = _reserve_or_create(slot, amount)
            if counter_id is None:
                raise BudgetExceeded(slot, amount)  # rolls back the slots already reserved
            if counter_id:
                counters.append(counter_id)
        Reservation.objects.bulk_create(
            Reservation(request_id=request_id, counter_id=c, amount=amount, expires_at=expires_at)
            for c in counters
        )
    return counters


async def areserve(
    *, request_id: str, slots: Sequence[Slot], amount: Decimal, expires_at: datetime
) -> bool:
    """`reserve` from the event loop (`config.apg`, PostgreSQL): one statement. False when it did
    not reserve — a slot without room, or without a counter row yet; `reserve` then tells which
    (and creates the rows, or refuses)."""
    params = _reserve_all_params(request_id, slots, amount, expires_at)
    return await apg.fetchone(_reserve_all_sql(len(slots)), params) is not None


def _reserve_all_params(
    request_id: str, slots: Sequence[Slot], amount: Decimal, expires_at: datetime
) -> list[Any]:
    want = [value for slot in slots for value in (slot.limit.id, slot.start, slot.limit.amount)]
    return [*want, amount, amount, request_id, amount, timezone.now(), expires_at]


# --- settle, release, sweep -----------------------------------------------------------------


@dataclass
class _Move:
    """What one counter gains in spend and loses in reservations."""

    limit_id: int
    start: datetime
    counter_id: int | None = None
    slot: Slot | None = None
    spend: Decimal = ZERO
    unreserve: Decimal = ZERO


def _take_call_reservations(request_id: str) -> list[dict]:
    if connection.vendor != "postgresql":
        return _take_reservations({"request_id": request_id})
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_SQL, [request_id])
        return _taken(cursor.fetchall())


def _taken(rows: Sequence[Sequence[Any]]) -> list[dict]:
    """The rows `_TAKE_SQL` returned, as `_take_reservations` returns its own, in id order."""
    return sorted((dict(zip(_TAKEN, row, strict=True)) for row in rows), key=lambda r: r["id"])


def _take_reservations(
    filters: dict[str, Any], *, skip_locked: bool = False, limit: int | None = None
) -> list[dict]:
    """Lock, read and delete reservation rows. Whoever deletes a row gives it back; a concurrent
    settle/release/sweep of the same row waits for the lock and then finds nothing."""
    query = (
        Reservation.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .filter(**filters)
        .order_by("id")
        .values("id", "counter_id", "amount", "counter__limit_id", "counter__period_start")
    )
    rows = list(query[:limit] if limit else query)
    if rows:
        Reservation.objects.filter(id__in=[r["id"] for r in rows]).delete()
    return rows


def _moves_for(reservations: list[dict], slots: Sequence[Slot], cost: Decimal) -> list[_Move]:
    moves: dict[tuple[int, datetime], _Move] = {}
    for row in reservations:
        key = (row["counter__limit_id"], row["counter__period_start"])
        move = moves.setdefault(key, _Move(*key, counter_id=row["counter_id"]))
        move.unreserve += row["amount"]
    if cost > 0:
        for slot in slots:
            move = moves.setdefault(slot.key, _Move(*slot.key))
            move.slot, move.spend = slot, cost
    return [moves[key] for key in sorted(moves)]


def _move_statement(move: _Move) -> tuple[str, list[Any]]:
    if move.counter_id:
        sql, key = _MOVE_SQL.format(where=_BY_ID), [move.counter_id]
    else:
        sql, key = _MOVE_SQL.format(where=_BY_KEY), [move.limit_id, _dt(move.start)]
    return sql, [move.spend, move.unreserve, *key]


def _charged(row: Sequence[Any], slot: Slot) -> Charged:
    return Charged(row[0], slot, _money(row[1]), int(row[2]))


def _apply_one(move: _Move) -> tuple[Any, ...] | None:
    return _fetchone(*_move_statement(move))


def _apply(moves: Sequence[_Move]) -> list[Charged]:
    charged = []
    for move in moves:
        row = _apply_one(move)
        if (
            row is None
            and move.slot is not None
            and move.slot.limit.id in _ensure_counters([move.slot])
        ):
            row = _apply_one(move)
        if row is not None and move.slot is not None:
            charged.append(_charged(row, move.slot))
    return charged


def settle(*, request_id: str, slots: Sequence[Slot], cost: Decimal | None) -> list[Charged]:
    """Swap the call's reservations for its real `cost`, charged to `slots` (the limits in scope
    in the period the call ended). Call inside the transaction that writes the ledger row, so
    both happen or neither. Returns the charged counters, for the alert check."""
    with transaction.atomic(savepoint=False):
        reservations = _take_call_reservations(request_id)
        return _apply(_moves_for(reservations, slots, cost or ZERO))


# Settlement in one statement on PostgreSQL (the event loop's connection:
# `admission.settle_on_loop`): the ledger row's INSERT, the call's reservations taken, and every
# counter the call touches moved — charged the cost (the limits in scope when it ended) or given
# back its reservation (the limits it reserved on when admitted), or both. The moves are one
# upsert, in the fixed (limit id, period start) order every writer locks counters in; a row may
# not exist yet in a new period. `unreserved` gives back reservations on any other counter, after
# the upsert (it reads its rows): none when the caller names every counter it reserved on, and
# there so that a reservation is never taken without being given back. The sub-statements share
# one snapshot and never see each other's writes; these two touch different rows. The result
# rows tell the ledger row's id and the moved counters. The caller's own statements (`also`)
# join it as further data-modifying CTEs, which PostgreSQL runs to completion whether or not the
# SELECT reads them, in the same snapshot and the same implicit transaction: they name the
# ledger row's id as `LEDGER_ID`. Built from constants only; every value is a parameter.
_SETTLE_SQL = """
    WITH rec AS ({insert}),
    taken AS (
        DELETE FROM {reservations} WHERE request_id = %s RETURNING counter_id, amount
    ),
    moves (limit_id, period_start, period_end, spend) AS ({moves}),
    moved AS (
        INSERT INTO {counters} (limit_id, period_start, period_end, spent, reserved, alert_level)
        SELECT limit_id, period_start, period_end, spend, 0, 0 FROM moves
        ORDER BY limit_id, period_start
        ON CONFLICT (limit_id, period_start) DO UPDATE SET
            spent = {counters}.spent + EXCLUDED.spent,
            reserved = {counters}.reserved - coalesce(
                (SELECT sum(amount) FROM taken WHERE taken.counter_id = {counters}.id), 0)
        RETURNING id, limit_id, period_start, spent, alert_level
    ),
    unreserved AS (
        UPDATE {counters} c SET reserved = c.reserved - t.amount
        FROM (SELECT counter_id, sum(amount) AS amount FROM taken GROUP BY counter_id) t
        WHERE c.id = t.counter_id AND c.id NOT IN (SELECT id FROM moved)
        RETURNING c.id
    ){also}
    SELECT (SELECT id FROM rec), m.id, m.limit_id, m.period_start, m.spent, m.alert_level,
           (SELECT count(*) FROM unreserved)
    FROM (SELECT 1) AS one LEFT JOIN moved m ON true"""


@functools.cache
def _moves(n: int) -> str:
    """The rows of `moves`: n of them, as parameters (none: an empty relation of that shape)."""
    row = f"CAST(%s AS bigint), CAST(%s AS timestamptz), CAST(%s AS timestamptz), {_NUM}"
    if n == 0:
        return "SELECT " + row.replace("%s", "NULL") + " WHERE false"
    return "VALUES " + ", ".join([f"({row})"] * n)


@dataclass(frozen=True, slots=True)
class Expression:
    """SQL standing for a value inside a statement, where a parameter would otherwise go."""

    sql: str


#: the id of the ledger row that `settle_statement` writes, for the statements joining it
LEDGER_ID = Expression("(SELECT id FROM rec)")


def settle_statement(
    *,
    insert: str,
    values: Sequence[Any],
    request_id: str,
    slots: Sequence[Slot],
    held: Sequence[Slot],
    cost: Decimal,
    also: Sequence[tuple[str, Sequence[Any]]] = (),
) -> tuple[str, list[Any]]:
    """The one statement settling a call whose ledger row `insert` writes: `cost` charged to
    `slots`, the reservations on `held` (the slots it reserved on when admitted) given back.
    `also`: further INSERTs, UPDATEs or DELETEs (without RETURNING) to commit with it, naming
    `LEDGER_ID`."""
    moves: dict[tuple[int, datetime], tuple[Slot, Decimal]] = {s.key: (s, ZERO) for s in held}
    if cost > 0:
        moves.update((slot.key, (slot, cost)) for slot in slots)
    ordered = [moves[key] for key in sorted(moves)]
    sql = _SETTLE_SQL.format(
        insert=insert,
        reservations=Reservation._meta.db_table,
        moves=_moves(len(ordered)),
        counters=_COUNTERS,
        also="".join(f",\n    also_{n} AS ({statement})" for n, (statement, _) in enumerate(also)),
    )
    params = [*values, request_id]
    for slot, spend in ordered:
        params += [slot.limit.id, slot.start, slot.end, spend]
    for _, more in also:
        params += more
    return sql, params


def settled(
    rows: Sequence[Sequence[Any]], slots: Sequence[Slot], cost: Decimal
) -> tuple[Any, list[Charged]]:
    """(the ledger row's id, the charged counters) from the rows of `settle_statement`."""
    charged_slots = {slot.key: slot for slot in slots} if cost > 0 else {}
    charged = [
        Charged(counter_id, charged_slots[(limit_id, start)], _money(spent), int(level))
        for _, counter_id, limit_id, start, spent, level, _ in rows
        if (limit_id, start) in charged_slots
    ]
    return rows[0][0], charged


def release(*, request_id: str) -> Decimal:
    """Give back every reservation of a call that made no provider call. Idempotent."""
    with transaction.atomic():
        reservations = _take_call_reservations(request_id)
        _apply(_moves_for(reservations, (), ZERO))
    return sum((r["amount"] for r in reservations), ZERO)


def sweep(*, now: datetime | None = None, batch: int = 500) -> int:
    """Give back reservations past their expiry (calls whose process died). Safe to run
    concurrently with itself and with live traffic. Returns how many were swept."""
    now = now or timezone.now()
    swept = 0
    while True:
        with transaction.atomic():
            rows = _take_reservations({"expires_at__lte": now}, skip_locked=True, limit=batch)
            _apply(_moves_for(rows, (), ZERO))
        swept += len(rows)
        if len(rows) < batch:
            return swept


# --- reads ----------------------------------------------------------------------------------


def counters_for(slots: Sequence[Slot]) -> dict[tuple[int, datetime], SpendingCounter]:
    """The existing counter rows of `slots`, by slot key (missing: nothing spent yet)."""
    if not slots:
        return {}
    by_start = defaultdict(list)
    for slot in slots:
        by_start[slot.start].append(slot.limit.id)
    found = {}
    for start, limit_ids in by_start.items():
        for counter in SpendingCounter.objects.filter(limit_id__in=limit_ids, period_start=start):
            found[(counter.limit_id, counter.period_start)] = counter
    return found


# --- limits (admin writes) ------------------------------------------------------------------

LIMIT_FIELDS = ("name", "period", "amount", "hard", "alert_thresholds")


def spending_limit_create(*, organization: Organization, **fields: Any) -> SpendingLimit:
    limit = SpendingLimit(organization=organization, **fields)
    limit.full_clean()
    limit.save()
    return limit


def spending_limit_update(*, limit: SpendingLimit, **fields: Any) -> SpendingLimit:
    """Scope and target are fixed once created (their counters belong to them); the amount,
    period, kind and thresholds may change and apply from the next admission."""
    for name, value in fields.items():
        if name not in LIMIT_FIELDS:
            raise ValueError(f"{name} cannot be changed on a spending limit.")
        setattr(limit, name, value)
    limit.full_clean()
    limit.save()
    return limit


def spending_limit_delete(*, limit: SpendingLimit) -> None:
    # Counters and reservations go with it (CASCADE); in-flight calls settle without it.
    limit.delete()
