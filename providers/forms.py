"""Admin forms for credentials: the key is a password field, never pre-filled, never echoed."""

from __future__ import annotations

from typing import Any

from django import forms

from providers import netguard
from providers.adapters.base import ProviderError
from providers.models import ProviderCredential
from providers.models.credentials import EDITABLE_FIELDS


class CredentialAdminForm(forms.ModelForm):
    base_url = forms.URLField(required=False, assume_scheme="https", max_length=300)
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Required when adding; use 'Rotate key' to change it later.",
    )

    class Meta:
        model = ProviderCredential
        fields = ["organization", *EDITABLE_FIELDS]

    def clean_base_url(self) -> str:
        url = self.cleaned_data.get("base_url", "")
        if url:
            try:
                netguard.check_url(url, resolve=True)
            except ProviderError as exc:
                raise forms.ValidationError(exc.message) from None
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None and not data.get("api_key"):
            self.add_error("api_key", "An API key is required for a new credential.")
        return data

    def save(self, commit: bool = True) -> ProviderCredential:
        credential = super().save(commit=False)
        if self.cleaned_data.get("api_key") and credential.pk is None:
            credential.set_secret(self.cleaned_data["api_key"])
        if commit:
            credential.save()
        return credential


class RotateKeyForm(forms.Form):
    api_key = forms.CharField(
        label="New API key", strip=True, widget=forms.PasswordInput(render_value=False)
    )
    force = forms.BooleanField(
        label="Save even if the live test fails", required=False, initial=False
    )
