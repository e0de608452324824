"""The providers app's models, one module per concept."""

from providers.models.catalogue import ModelSetting
from providers.models.credentials import ProviderCredential

__all__ = ["ModelSetting", "ProviderCredential"]
