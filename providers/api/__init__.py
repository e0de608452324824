"""REST routes of providers (mounted under /api/)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from providers.api import budget, catalogue, limits, usage
from providers.api.credentials import CredentialViewSet

router = SimpleRouter(trailing_slash=False)
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = [
    path("providers", catalogue.ProviderList.as_view(), name="api-providers"),
    path(
        "providers/<slug:provider>/models",
        catalogue.ProviderModels.as_view(),
        name="api-provider-models",
    ),
    path("model-settings", catalogue.ModelSettingList.as_view(), name="api-model-settings"),
    path(
        "model-settings/<int:pk>", catalogue.ModelSettingDetail.as_view(), name="api-model-setting"
    ),
    *router.urls,
]

# The cost-control endpoints (limits, alerts, usage, budget) live in their own modules.
urlpatterns += [*limits.urlpatterns, *usage.urlpatterns, *budget.urlpatterns]

# The original design's routes, kept for its clients (mounted at the root).
legacy_urlpatterns = [
    path("providers", catalogue.ProviderList.as_view(), name="legacy-providers"),
    path(
        "providers/<slug:provider>/models",
        catalogue.ProviderModels.as_view(),
        name="legacy-provider-models",
    ),
]
