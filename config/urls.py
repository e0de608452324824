from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import chats.api as chats_api
import providers.api as providers_api
from accounts import views as account_views
from providers.admin_reports import usage_report

urlpatterns = [
    path("admin/reports/usage/", usage_report, name="admin-usage-report"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("accounts.api")),
    path("api/", include("providers.api")),
    path("api/", include("chats.api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include(providers_api.legacy_urlpatterns)),
    path("", include("providers.gateway.urls")),
    path("", include(chats_api.legacy_urlpatterns)),
    path("healthz", account_views.healthz, name="healthz"),
    path("", include("chats.portal.urls")),
]

handler404 = "config.error_pages.not_found"
handler500 = "config.error_pages.server_error"
