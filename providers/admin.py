from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.audit import audit_record
from accounts.models import AuditEvent
from providers import (
    admin_cost,  # noqa: F401 - registers the ledger, limits and alerts admin
    crypto,
    services,
)
from providers.forms import CredentialAdminForm, RotateKeyForm
from providers.models import ModelSetting, ProviderCredential


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialAdminForm
    list_display = [
        "name",
        "organization",
        "provider",
        "kind",
        "key_hint",
        "version",
        "rotated_at",
        "priority",
        "enabled",
    ]
    list_filter = ["kind", "enabled", "organization"]
    search_fields = ["name", "provider", "organization__name", "organization__slug"]
    raw_id_fields = ["organization"]
    readonly_fields = ["key_hint", "version", "rotated_at"]
    change_form_template = "admin/providers/credential_change_form.html"
    change_list_template = "admin/providers/credential_change_list.html"

    def get_fields(self, request: HttpRequest, obj: ProviderCredential | None = None) -> list[str]:
        fields = list(CredentialAdminForm.Meta.fields)
        return (
            [*fields, "api_key"] if obj is None else [*fields, "key_hint", "version", "rotated_at"]
        )

    def save_model(
        self, request: HttpRequest, obj: ProviderCredential, form: object, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        action = (
            AuditEvent.Action.CREDENTIAL_UPDATED if change else AuditEvent.Action.CREDENTIAL_CREATED
        )
        after = {
            f: getattr(obj, f)
            for f in ["name", "provider", "kind", "base_url", "priority", "enabled"]
        }
        audit_record(
            action=action, organization=obj.organization, request=request, target=obj, after=after
        )

    def delete_model(self, request: HttpRequest, obj: ProviderCredential) -> None:
        audit_record(
            action=AuditEvent.Action.CREDENTIAL_DELETED,
            organization=obj.organization,
            request=request,
            target=obj,
        )
        super().delete_model(request, obj)

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:pk>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="providers_providercredential_rotate",
            )
        ]
        return custom + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        encrypted = ProviderCredential.objects.values_list("secret_encrypted", flat=True)
        stale = sum(1 for token in encrypted if not crypto.on_newest_key(token))
        extra = {"secrets_on_old_key": stale, **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def rotate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        credential = get_object_or_404(ProviderCredential, pk=pk)
        if not self.has_change_permission(request, credential):
            return HttpResponseRedirect(reverse("admin:index"))
        form = RotateKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            result = services.credential_rotate(
                credential=credential,
                api_key=form.cleaned_data["api_key"],
                force=form.cleaned_data["force"],
            )
            audit_record(
                action=AuditEvent.Action.CREDENTIAL_ROTATED,
                organization=credential.organization,
                request=request,
                target=credential,
                after={
                    "rotated": result.rotated,
                    "test": result.test.code,
                    "version": credential.version,
                },
            )
            if result.rotated:
                self.message_user(
                    request,
                    f"Key rotated: now version {credential.version} ({credential.key_hint}).",
                )
                return HttpResponseRedirect(
                    reverse("admin:providers_providercredential_change", args=[pk])
                )
            messages.error(
                request,
                f"The new key failed its live test ({result.test.code}): {result.test.message}",
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate key of {credential.name}",
            "credential": credential,
            "form": RotateKeyForm(),  # never re-render the submitted key
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/providers/rotate_key.html", context)


@admin.register(ModelSetting)
class ModelSettingAdmin(admin.ModelAdmin):
    list_display = [
        "organization",
        "provider",
        "model",
        "enabled",
        "context_window",
        "max_output_tokens",
    ]
    list_filter = ["enabled", "provider"]
    search_fields = ["model", "provider", "organization__slug"]
    raw_id_fields = ["organization"]
