"""Provider credentials for organisation admins. The key is write-only: reads show its hint."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.audit import audit_record
from accounts.models import AuditEvent
from accounts.permissions import IsOrgAdmin
from accounts.tenancy import request_membership
from config.errors import ApiError
from providers import services
from providers.models import ProviderCredential
from providers.models.credentials import EDITABLE_FIELDS

WRITABLE = EDITABLE_FIELDS


def _public(credential: ProviderCredential) -> dict:
    """What an audit entry may say about a credential: everything but the secret."""
    return {name: getattr(credential, name) for name in [*WRITABLE, "key_hint", "version"]}


class CredentialSerializer(serializers.ModelSerializer):
    api_key = serializers.CharField(write_only=True, trim_whitespace=True, max_length=500)
    provider = serializers.SlugField(required=False, max_length=50)

    class Meta:
        model = ProviderCredential
        fields = ["id", *WRITABLE, "api_key", "key_hint", "version", "rotated_at", "created_at"]
        read_only_fields = ["key_hint", "version", "rotated_at", "created_at"]


class CredentialUpdateSerializer(CredentialSerializer):
    class Meta(CredentialSerializer.Meta):
        fields = ["id", *WRITABLE, "key_hint", "version", "rotated_at", "created_at"]


class RotateSerializer(serializers.Serializer):
    api_key = serializers.CharField(write_only=True, max_length=500)
    force = serializers.BooleanField(default=False, help_text="Save even if the live test fails.")


TestResultSerializer = inline_serializer(
    "CredentialTestResult",
    {
        "ok": serializers.BooleanField(),
        "code": serializers.CharField(),
        "message": serializers.CharField(),
        "models": serializers.IntegerField(),
    },
)


_ID = extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)])


@extend_schema_view(retrieve=_ID, partial_update=_ID, destroy=_ID, test=_ID, rotate=_ID)
class CredentialViewSet(viewsets.ModelViewSet):
    permission_classes = [IsAuthenticated, IsOrgAdmin]
    http_method_names = ["get", "post", "patch", "delete"]
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[ProviderCredential]:
        return ProviderCredential.objects.for_organization(
            request_membership(self.request).organization
        )

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "partial_update":
            return CredentialUpdateSerializer
        if self.action == "rotate":
            return RotateSerializer
        return CredentialSerializer

    def perform_create(self, serializer: CredentialSerializer) -> None:
        data = dict(serializer.validated_data)
        organization = request_membership(self.request).organization
        if ProviderCredential.objects.filter(organization=organization, name=data["name"]).exists():
            raise ApiError(
                "duplicate_name", "A credential with this name exists.", fields={"name": "taken"}
            )
        serializer.instance = services.credential_create(organization=organization, **data)
        self._audit(
            AuditEvent.Action.CREDENTIAL_CREATED,
            serializer.instance,
            after=_public(serializer.instance),
        )

    def perform_update(self, serializer: CredentialUpdateSerializer) -> None:
        before = _public(serializer.instance)
        serializer.instance = services.credential_update(
            credential=serializer.instance, **serializer.validated_data
        )
        self._audit(
            AuditEvent.Action.CREDENTIAL_UPDATED,
            serializer.instance,
            before=before,
            after=_public(serializer.instance),
        )

    def perform_destroy(self, instance: ProviderCredential) -> None:
        self._audit(AuditEvent.Action.CREDENTIAL_DELETED, instance, before=_public(instance))
        instance.delete()

    def _audit(self, action: str, credential: ProviderCredential, **change: dict) -> None:
        audit_record(
            action=action,
            organization=credential.organization,
            request=self.request,
            target=credential,
            **change,
        )

    @extend_schema(request=None, responses=TestResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        credential = self.get_object()
        result = services.credential_test(credential=credential)
        self._audit(
            AuditEvent.Action.CREDENTIAL_TESTED,
            credential,
            after={"ok": result.ok, "code": result.code},
        )
        return Response(result.__dict__)

    @extend_schema(
        request=RotateSerializer, responses={200: CredentialSerializer, 409: TestResultSerializer}
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str) -> Response:
        credential = self.get_object()
        serializer = RotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        old = {"version": credential.version, "key_hint": credential.key_hint}
        result = services.credential_rotate(credential=credential, **serializer.validated_data)
        self._audit(
            AuditEvent.Action.CREDENTIAL_ROTATED,
            credential,
            before=old,
            after={
                "rotated": result.rotated,
                "test": result.test.code,
                "forced": serializer.validated_data["force"],
                "version": credential.version,
                "key_hint": credential.key_hint,
            },
        )
        if not result.rotated:
            raise ApiError(
                "rotation_test_failed",
                f"The new key failed its live test ({result.test.code}): {result.test.message} "
                "Send force=true to save it anyway.",
                status_code=status.HTTP_409_CONFLICT,
            )
        return Response(CredentialSerializer(credential).data)
