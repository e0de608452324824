"""What a call costs: the price of a provider/model pair, and cost from token counts.

Lookup order (first match wins):

1. an override of the caller's organisation (`PriceOverride` with the organisation set),
2. a platform-wide override (`PriceOverride` without an organisation),
3. the genai-prices catalogue (its bundled snapshot: no network, ever), for the kinds it
   prices — `openai` and `anthropic`; Ollama, OpenAI-compatible servers and the simulator's
   `sim-*` models have no catalogue price,
4. none: the price is unknown, and the organisation's `CostPolicy` decides (see admission).

An override's `provider` matches the provider name members pick (a credential's `provider`)
or the credential's kind; the name wins when both exist at the same level.

Prices are USD per million tokens. Costs are Decimals quantised to 1e-10 USD (the precision of
the ledger's columns), so counters and the sum of the ledger agree to the last digit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any

from django.db.models import Q

from providers.adapters.base import Usage
from providers.models import PriceOverride, UsageRecord

logger = logging.getLogger(__name__)

MTOK = Decimal(1_000_000)
QUANTUM = Decimal("1e-10")
ZERO = Decimal(0)
Source = UsageRecord.PriceSource

#: our credential kinds → genai-prices provider ids (kinds not listed are never catalogue-priced)
CATALOGUE_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens, and where the numbers came from."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    source: str

    @property
    def is_free(self) -> bool:
        return self.input_per_mtok == 0 and self.output_per_mtok == 0


def cost(*, usage: Usage, price: Price | None) -> Decimal | None:
    """The cost of `usage` at `price`; None when the price is unknown."""
    if price is None:
        return None
    raw = usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
    return (raw / MTOK).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def worst_case_cost(*, price: Price, input_tokens: int, max_tokens: int) -> Decimal:
    """The most a call can cost, rounded up: reservations must never fall short."""
    raw = input_tokens * price.input_per_mtok + max_tokens * price.output_per_mtok
    return (raw / MTOK).quantize(QUANTUM, rounding=ROUND_CEILING)


# --- genai-prices ---------------------------------------------------------------------------


def catalogue_price(*, kind: str, model: str, input_tokens: int | None = None) -> Price | None:
    """genai-prices' price for `model` under our credential `kind`, or None. Tiered prices (a
    higher rate for all tokens once the input passes a threshold) use the tier of
    `input_tokens`; None means the worst case, the highest tier."""
    provider_id = CATALOGUE_PROVIDERS.get(kind)
    if provider_id is None or not model:
        return None
    # The day is part of the cache key because catalogue prices can change on a known date.
    found = _catalogue_entry(provider_id, model, datetime.now(tz=UTC).date())
    if found is None:
        return None
    input_price, output_price = found
    return Price(
        _tier(input_price, input_tokens), _tier(output_price, input_tokens), Source.CATALOGUE
    )


@lru_cache(maxsize=2048)
def _catalogue_entry(provider_id: str, model: str, day: date) -> tuple[Any, Any] | None:
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
    prices = info.get_prices(datetime.combine(day, datetime.min.time(), tzinfo=UTC))
    input_price, output_price = prices.input_mtok, prices.output_mtok
    if input_price is None and output_price is None:
        return None
    return input_price, output_price


def _tier(value: Any, input_tokens: int | None) -> Decimal:
    """A flat price as is; a tiered one (genai_prices.types.TieredPrices) resolved like
    genai-prices does: the highest tier whose start the input tokens exceed."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    tiers = sorted(value.tiers, key=lambda tier: tier.start)
    if input_tokens is None:
        return max([value.base, *(tier.price for tier in tiers)])
    applicable = value.base
    for tier in tiers:
        if input_tokens > tier.start:
            applicable = tier.price
    return applicable


# --- overrides ------------------------------------------------------------------------------


def _rank(override: PriceOverride, provider: str) -> tuple[int, int]:
    return (0 if override.organization_id else 1, 0 if override.provider == provider else 1)


def _best_override(
    overrides: Iterable[PriceOverride], *, provider: str, kind: str
) -> PriceOverride | None:
    matching = [o for o in overrides if o.provider in (provider, kind)]
    return min(matching, key=lambda o: _rank(o, provider), default=None)


def _overrides(
    *,
    organization_id: int,
    names: set[str],
    model: str,
    known: Iterable[PriceOverride] | None,
) -> list[PriceOverride]:
    if known is not None:  # the organisation's and the platform's, already read
        return [o for o in known if o.provider in names and o.model == model]
    return list(
        PriceOverride.objects.filter(
            Q(organization_id=organization_id) | Q(organization__isnull=True),
            provider__in=sorted(names),
            model=model,
        )
    )


def _from_override(override: PriceOverride) -> Price:
    source = Source.ORGANIZATION if override.organization_id else Source.PLATFORM
    return Price(override.input_per_mtok, override.output_per_mtok, source)


def prices_for(
    *,
    organization_id: int,
    provider: str,
    kinds: Iterable[str],
    model: str,
    input_tokens: int | None = None,
    overrides: Iterable[PriceOverride] | None = None,
) -> dict[str, Price | None]:
    """The price of `model` at `provider` for each credential kind given (the candidates of a
    route may differ in kind), in one query — none when `overrides` holds the overrides that
    apply to the organisation (its snapshot's). None for a kind means: no known price."""
    kinds = set(kinds)
    overrides = _overrides(
        organization_id=organization_id, names={provider, *kinds}, model=model, known=overrides
    )
    found: dict[str, Price | None] = {}
    for kind in kinds:
        override = _best_override(overrides, provider=provider, kind=kind)
        if override is not None:
            found[kind] = _from_override(override)
        else:
            found[kind] = catalogue_price(kind=kind, model=model, input_tokens=input_tokens)
    return found


def price_for(
    *,
    organization_id: int,
    provider: str,
    kind: str,
    model: str,
    input_tokens: int | None = None,
    overrides: Iterable[PriceOverride] | None = None,
) -> Price | None:
    """The price one call is charged at; see the module docstring for the order."""
    return prices_for(
        organization_id=organization_id,
        provider=provider,
        kinds=[kind],
        model=model,
        input_tokens=input_tokens,
        overrides=overrides,
    )[kind]
