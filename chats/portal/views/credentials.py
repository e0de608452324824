"""Organisation admin: provider credentials — add, edit, test, rotate, disable, delete.

The same services as the REST API, with the same audit entries. The key is write-only: asked for
in password inputs that are never filled back, and afterwards only its hint is ever shown.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.audit import audit_record
from accounts.models import AuditEvent
from chats.portal.access import admin_required
from chats.portal.common import done, form_errors
from chats.portal.forms import CredentialCreateForm, CredentialForm, RotateForm
from config.errors import ApiError
from providers import services
from providers.api.credentials import WRITABLE
from providers.models import ProviderCredential

Action = AuditEvent.Action


def _credentials(request: HttpRequest) -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.for_organization(request.membership.organization)


def _public(credential: ProviderCredential) -> dict[str, Any]:
    """What an audit entry may say about a credential: everything but the secret."""
    return {name: getattr(credential, name) for name in [*WRITABLE, "key_hint", "version"]}


def _audit(
    request: HttpRequest, action: str, credential: ProviderCredential, **change: Any
) -> None:
    audit_record(
        action=action,
        organization=credential.organization,
        request=request,
        target=credential,
        **change,
    )


def _apply_error(form: CredentialForm, exc: ApiError) -> None:
    for field, text in (exc.fields or {}).items():
        if field in form.fields:
            form.add_error(field, exc.message if text in ("required", "taken") else str(text))
    if not exc.fields:
        form.add_error(None, exc.message)


def _create(request: HttpRequest, form: CredentialCreateForm) -> ProviderCredential | None:
    data = dict(form.cleaned_data)
    organization = request.membership.organization
    if _credentials(request).filter(name=data["name"]).exists():
        form.add_error("name", "A credential with this name exists.")
        return None
    try:
        credential = services.credential_create(organization=organization, **data)
    except ApiError as exc:
        _apply_error(form, exc)
        return None
    _audit(request, Action.CREDENTIAL_CREATED, credential, after=_public(credential))
    return credential


@require_http_methods(["GET", "POST"])
@admin_required
def credential_list(request: HttpRequest) -> HttpResponse:
    form = CredentialCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        credential = _create(request, form)
        if credential is not None:
            text = f"Credential “{credential.name}” added (key {credential.key_hint})."
            return done(request, "portal:credentials", text)
    context = {
        "form": form,
        "credentials": _credentials(request).order_by("provider", "priority", "id"),
        "rotate_form": RotateForm(),
    }
    status = 400 if form.errors else 200
    return render(request, "portal/org/credentials.html", context, status=status)


@require_http_methods(["GET", "POST"])
@admin_required
def credential_edit(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = get_object_or_404(_credentials(request), pk=credential_id)
    initial = {name: getattr(credential, name) for name in CredentialForm.base_fields}
    form = CredentialForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        before = _public(credential)
        data = dict(form.cleaned_data)
        data["provider"] = data["provider"] or data["kind"]
        try:
            services.credential_update(credential=credential, **data)
        except ApiError as exc:
            _apply_error(form, exc)
        else:
            _audit(
                request,
                Action.CREDENTIAL_UPDATED,
                credential,
                before=before,
                after=_public(credential),
            )
            return done(request, "portal:credentials", f"Credential “{credential.name}” saved.")
    context = {"form": form, "credential": credential, "rotate_form": RotateForm()}
    status = 400 if form.errors else 200
    return render(request, "portal/org/credential_edit.html", context, status=status)


@require_POST
@admin_required
def credential_test(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = get_object_or_404(_credentials(request), pk=credential_id)
    result = services.credential_test(credential=credential)
    _audit(
        request, Action.CREDENTIAL_TESTED, credential, after={"ok": result.ok, "code": result.code}
    )
    if result.ok:
        messages.success(request, f"“{credential.name}” works: {result.message}")
    else:
        messages.error(
            request, f"“{credential.name}” failed its test ({result.code}): {result.message}"
        )
    return redirect(_back(request))


@require_POST
@admin_required
def credential_rotate(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = get_object_or_404(_credentials(request), pk=credential_id)
    form = RotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect(_back(request))
    old = {"version": credential.version, "key_hint": credential.key_hint}
    force = form.cleaned_data["force"]
    result = services.credential_rotate(
        credential=credential, api_key=form.cleaned_data["api_key"], force=force
    )
    _audit(
        request,
        Action.CREDENTIAL_ROTATED,
        credential,
        before=old,
        after={
            "rotated": result.rotated,
            "test": result.test.code,
            "forced": force,
            "version": credential.version,
            "key_hint": credential.key_hint,
        },
    )
    if result.rotated:
        messages.success(
            request,
            f"Key of “{credential.name}” rotated: now {credential.key_hint} "
            f"(version {credential.version}).",
        )
    else:
        messages.error(
            request,
            f"The new key failed its live test ({result.test.code}): {result.test.message} "
            "The old key is still in use; tick “Save even if the live test fails” to save it "
            "anyway.",
        )
    return redirect(_back(request))


@require_POST
@admin_required
def credential_toggle(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = get_object_or_404(_credentials(request), pk=credential_id)
    before = _public(credential)
    enabled = request.POST.get("enabled") == "1"
    services.credential_update(credential=credential, enabled=enabled)
    _audit(request, Action.CREDENTIAL_UPDATED, credential, before=before, after=_public(credential))
    state = "enabled" if enabled else "disabled"
    return done(request, _back(request), f"Credential “{credential.name}” {state}.")


@require_POST
@admin_required
def credential_delete(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = get_object_or_404(_credentials(request), pk=credential_id)
    _audit(request, Action.CREDENTIAL_DELETED, credential, before=_public(credential))
    name = credential.name
    credential.delete()
    return done(request, "portal:credentials", f"Credential “{name}” deleted.")


def _back(request: HttpRequest) -> str:
    """Back to the page the action was taken from (the list or the credential's page)."""
    credential_id = request.POST.get("from_credential")
    if credential_id and credential_id.isdigit():
        return reverse("portal:credential", args=[int(credential_id)])
    return reverse("portal:credentials")
