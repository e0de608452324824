"""Portal forms. Secrets are password inputs that are never rendered back."""

from __future__ import annotations

from django import forms

from accounts.models import Membership
from providers.models import ProviderCredential, SpendingLimit


class PortalForm(forms.Form):
    """Labels without Django's trailing colon: they read as names, for people and tests."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class RenameForm(PortalForm):
    title = forms.CharField(max_length=200, strip=True)


class ChatSettingsForm(PortalForm):
    provider = forms.SlugField(max_length=50, required=False)
    model = forms.CharField(max_length=200, required=False)
    system_prompt_id = forms.IntegerField(required=False, min_value=1)


class SystemPromptTextForm(PortalForm):
    system_prompt = forms.CharField(required=False, max_length=32_000, strip=False)


class PromptForm(PortalForm):
    name = forms.CharField(max_length=100, strip=True)
    content = forms.CharField(max_length=32_000, widget=forms.Textarea(attrs={"rows": 8}))
    is_default = forms.BooleanField(required=False, label="Use for my new chats")
    shared = forms.BooleanField(required=False, label="Share with the organisation")


class TokenForm(PortalForm):
    EXPIRY = [("", "Never"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]
    name = forms.CharField(max_length=100, strip=True)
    expires_in = forms.ChoiceField(choices=EXPIRY, required=False, label="Expires")


class InviteForm(PortalForm):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(PortalForm):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class CredentialForm(PortalForm):
    """The fields of a credential an admin may set. The key is not among them: it is asked for
    by `CredentialCreateForm` and `RotateForm` only."""

    name = forms.CharField(max_length=100)
    provider = forms.SlugField(
        max_length=50, required=False, help_text="The name members pick; empty: the kind."
    )
    kind = forms.ChoiceField(choices=ProviderCredential.Kind.choices)
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text="Needed for Ollama and OpenAI-compatible servers.",
    )
    priority = forms.IntegerField(min_value=0, initial=100, help_text="Lowest is tried first.")
    default_model = forms.CharField(max_length=200, required=False)


class CredentialCreateForm(CredentialForm):
    api_key = forms.CharField(
        label="API key",
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: stored encrypted, never shown again.",
    )


class RotateForm(PortalForm):
    api_key = forms.CharField(
        label="New API key",
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    force = forms.BooleanField(required=False, label="Save even if the live test fails")


class LimitSettingsForm(PortalForm):
    """What a limit may change once made (`budget.LIMIT_FIELDS`): its scope and target are fixed,
    because its counters belong to them."""

    name = forms.CharField(max_length=100, required=False)
    period = forms.ChoiceField(choices=SpendingLimit.Period.choices)
    amount = forms.DecimalField(min_value=0, max_digits=20, decimal_places=4, label="Amount (USD)")
    hard = forms.BooleanField(required=False, initial=True, label="Hard limit (blocks calls)")
    alert_thresholds = forms.CharField(
        required=False, initial="50, 80, 100", help_text="Percentages, comma-separated."
    )

    @classmethod
    def for_limit(cls, limit: SpendingLimit, data: object = None) -> LimitSettingsForm:
        initial = {name: getattr(limit, name) for name in ("name", "period", "hard")}
        initial["amount"] = format(limit.amount.normalize(), "f")  # 10, not 10.0000000000
        initial["alert_thresholds"] = ", ".join(str(t) for t in limit.alert_thresholds or ())
        return cls(data, initial=initial)

    def clean_alert_thresholds(self) -> list[int]:
        raw = self.cleaned_data.get("alert_thresholds", "")
        try:
            values = sorted({int(part) for part in raw.replace(" ", "").split(",") if part})
        except ValueError:
            raise forms.ValidationError("Use whole percentages, e.g. 50, 80, 100.") from None
        if any(not 1 <= value <= 1000 for value in values):
            raise forms.ValidationError("Each threshold is between 1 and 1000 percent.")
        return values


class LimitForm(LimitSettingsForm):
    """A new limit: its settings, and what it applies to."""

    scope = forms.ChoiceField(choices=SpendingLimit.Scope.choices)
    membership = forms.ModelChoiceField(
        queryset=Membership.objects.none(), required=False, label="Member"
    )
    credential = forms.ModelChoiceField(
        queryset=ProviderCredential.objects.none(), required=False, label="Credential"
    )

    def __init__(self, *args: object, organization: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["membership"].queryset = Membership.objects.filter(
            organization=organization
        ).select_related("user")
        self.fields["membership"].label_from_instance = lambda m: m.user.email
        self.fields["credential"].queryset = ProviderCredential.objects.for_organization(
            organization
        )
        self.fields["credential"].label_from_instance = lambda c: f"{c.name} ({c.provider})"

    def clean(self) -> dict:
        data = super().clean()
        scope = data.get("scope")
        if scope == SpendingLimit.Scope.MEMBER and not data.get("membership"):
            self.add_error("membership", "Pick the member this limit applies to.")
        if scope == SpendingLimit.Scope.CREDENTIAL and not data.get("credential"):
            self.add_error("credential", "Pick the credential this limit applies to.")
        return data

    def target_fields(self) -> dict:
        """Only the target the scope needs: the model refuses the others."""
        data = self.cleaned_data
        scope = data["scope"]
        return {
            "membership": data["membership"] if scope == SpendingLimit.Scope.MEMBER else None,
            "credential": data["credential"] if scope == SpendingLimit.Scope.CREDENTIAL else None,
        }
