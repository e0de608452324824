"""Prices: overrides (organisation, then platform), genai-prices offline, cost arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.adapters.base import Usage
from providers.models import PriceOverride, UsageRecord
from providers.prices import Price, catalogue_price, cost, price_for, worst_case_cost

Source = UsageRecord.PriceSource


@pytest.mark.parametrize(
    ("kind", "model", "input_per_mtok", "output_per_mtok"),
    [
        ("openai", "gpt-4o", "2.5", "10"),
        ("openai", "gpt-4o-mini", "0.15", "0.6"),
        ("anthropic", "claude-3-5-sonnet-latest", "3", "15"),
    ],
)
def test_catalogue_prices_known_models_without_network(
    kind, model, input_per_mtok, output_per_mtok
) -> None:
    price = catalogue_price(kind=kind, model=model)
    assert price == Price(Decimal(input_per_mtok), Decimal(output_per_mtok), Source.CATALOGUE)


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai", "sim-gpt"),
        ("anthropic", "sim-claude"),
        ("ollama", "llama3"),
        ("ollama", "sim-llama"),
        ("openai_compatible", "gpt-4o"),
        ("openai", ""),
    ],
)
def test_unknown_kinds_and_models_have_no_catalogue_price(kind, model) -> None:
    assert catalogue_price(kind=kind, model=model) is None


def test_tiered_catalogue_price_uses_the_tier_of_the_input() -> None:
    small = catalogue_price(kind="anthropic", model="claude-sonnet-4-5", input_tokens=1_000)
    large = catalogue_price(kind="anthropic", model="claude-sonnet-4-5", input_tokens=300_000)
    worst = catalogue_price(kind="anthropic", model="claude-sonnet-4-5")
    assert small.input_per_mtok < large.input_per_mtok
    assert worst == large  # admission reserves at the highest tier


def test_cost_is_exact_decimal_per_million_tokens() -> None:
    price = Price(Decimal("2.5"), Decimal("10"), Source.CATALOGUE)
    assert cost(usage=Usage(1_000, 500), price=price) == Decimal("0.0075")
    assert cost(usage=Usage(1, 1), price=price) == Decimal("0.0000125")
    assert cost(usage=Usage(1, 1), price=None) is None


def test_cost_is_quantised_to_the_ledger_precision() -> None:
    price = Price(Decimal("0.000001"), Decimal(0), Source.PLATFORM)
    assert cost(usage=Usage(3, 0), price=price) == Decimal("0E-10")
    assert cost(usage=Usage(3, 0), price=price).as_tuple().exponent == -10


def test_worst_case_rounds_up() -> None:
    price = Price(Decimal("0.00001"), Decimal(0), Source.PLATFORM)
    assert worst_case_cost(price=price, input_tokens=1, max_tokens=0) == Decimal("1E-10")
    full = Price(Decimal(3), Decimal(15), Source.CATALOGUE)
    assert worst_case_cost(price=full, input_tokens=1000, max_tokens=2000) == Decimal("0.033")


def test_organisation_override_beats_platform_override_beats_catalogue(acme, other) -> None:
    assert price_for(
        organization_id=acme.pk, provider="openai", kind="openai", model="gpt-4o"
    ).source == (Source.CATALOGUE)
    PriceOverride.objects.create(
        provider="openai", model="gpt-4o", input_per_mtok=2, output_per_mtok=8
    )
    platform = price_for(organization_id=acme.pk, provider="openai", kind="openai", model="gpt-4o")
    assert platform == Price(Decimal(2), Decimal(8), Source.PLATFORM)
    PriceOverride.objects.create(
        organization=acme, provider="openai", model="gpt-4o", input_per_mtok=1, output_per_mtok=4
    )
    mine = price_for(organization_id=acme.pk, provider="openai", kind="openai", model="gpt-4o")
    assert mine == Price(Decimal(1), Decimal(4), Source.ORGANIZATION)
    # Another organisation still sees the platform price, never Acme's.
    theirs = price_for(organization_id=other.pk, provider="openai", kind="openai", model="gpt-4o")
    assert theirs.source == Source.PLATFORM


def test_override_matches_provider_name_before_kind(acme) -> None:
    PriceOverride.objects.create(
        organization=acme, provider="openai", model="m", input_per_mtok=1, output_per_mtok=1
    )
    PriceOverride.objects.create(
        organization=acme, provider="team-gpt", model="m", input_per_mtok=5, output_per_mtok=5
    )
    by_name = price_for(organization_id=acme.pk, provider="team-gpt", kind="openai", model="m")
    by_kind = price_for(organization_id=acme.pk, provider="other-gpt", kind="openai", model="m")
    assert by_name.input_per_mtok == 5
    assert by_kind.input_per_mtok == 1


def test_override_prices_a_simulator_model(acme) -> None:
    assert price_for(
        organization_id=acme.pk, provider="openai", kind="openai", model="sim-gpt"
    ) is (None)
    PriceOverride.objects.create(
        provider="openai", model="sim-gpt", input_per_mtok=1, output_per_mtok=2
    )
    price = price_for(organization_id=acme.pk, provider="openai", kind="openai", model="sim-gpt")
    assert price == Price(Decimal(1), Decimal(2), Source.PLATFORM)


def test_zero_override_is_a_free_price_not_an_unknown_one(acme) -> None:
    PriceOverride.objects.create(
        organization=acme, provider="ollama", model="llama3", input_per_mtok=0, output_per_mtok=0
    )
    price = price_for(organization_id=acme.pk, provider="ollama", kind="ollama", model="llama3")
    assert price is not None and price.is_free
    assert cost(usage=Usage(10_000, 10_000), price=price) == 0
