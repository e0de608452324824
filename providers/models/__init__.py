"""The providers app's models, one module per concept."""

from providers.models.alerts import AlertEvent, WebhookDelivery
from providers.models.catalogue import ModelSetting
from providers.models.credentials import ProviderCredential
from providers.models.ledger import PriceOverride, UsageRecord
from providers.models.limits import Reservation, SpendingCounter, SpendingLimit
from providers.models.policy import CostPolicy

__all__ = [
    "AlertEvent",
    "CostPolicy",
    "ModelSetting",
    "PriceOverride",
    "ProviderCredential",
    "Reservation",
    "SpendingCounter",
    "SpendingLimit",
    "UsageRecord",
    "WebhookDelivery",
]
