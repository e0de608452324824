from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers and cost"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from providers.models import (
            CostPolicy,
            ModelSetting,
            PriceOverride,
            ProviderCredential,
            SpendingLimit,
        )
        from providers.snapshot import bump_on_change

        # What providers.snapshot holds: a change to any of it announces a new version.
        for model in (ProviderCredential, ModelSetting, SpendingLimit, CostPolicy, PriceOverride):
            post_save.connect(
                bump_on_change, sender=model, dispatch_uid=f"snapshot-{model.__name__}"
            )
            post_delete.connect(
                bump_on_change, sender=model, dispatch_uid=f"snapshot-del-{model.__name__}"
            )
