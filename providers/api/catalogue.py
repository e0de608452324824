"""Providers and models available to the caller's organisation, and the admins' model switches."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsOrgAdmin
from accounts.tenancy import request_membership
from config.dbhop import wait_unpooled
from config.errors import ApiError
from providers.catalogue import ProviderListing, provider_listings
from providers.models import ModelSetting


class ModelEntrySerializer(serializers.Serializer):
    id = serializers.CharField()
    enabled = serializers.BooleanField()


class ProviderInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    enabled = serializers.BooleanField()
    models = ModelEntrySerializer(many=True)
    default_model = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class ProviderModelsSerializer(serializers.Serializer):
    provider = serializers.CharField()
    models = ModelEntrySerializer(many=True)
    error = serializers.CharField(allow_null=True)


def listings_for(request: Request) -> list[ProviderListing]:
    # A listing may ask the providers (cached, bounded by timeouts): not on a pooled connection.
    return wait_unpooled(provider_listings, request_membership(request).organization)


class ProviderList(APIView):
    @extend_schema(responses=ProviderInfoSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ProviderInfoSerializer(listings_for(request), many=True).data)


class ProviderModels(APIView):
    @extend_schema(responses=ProviderModelsSerializer)
    def get(self, request: Request, provider: str) -> Response:
        found = next((p for p in listings_for(request) if p.name == provider), None)
        if found is None:
            raise ApiError("unknown_provider", f"Unknown provider {provider!r}.", status_code=404)
        body = {"provider": found.name, "models": found.models, "error": found.error}
        return Response(ProviderModelsSerializer(body).data)


class ModelSettingSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelSetting
        fields = ["id", "provider", "model", "enabled", "context_window", "max_output_tokens"]


class ModelSettingList(generics.ListCreateAPIView):
    """Admins switch models off (or on) and set their limits for the organisation."""

    serializer_class = ModelSettingSerializer
    permission_classes = [IsAuthenticated, IsOrgAdmin]

    def get_queryset(self) -> QuerySet[ModelSetting]:
        return ModelSetting.objects.for_organization(request_membership(self.request).organization)

    def perform_create(self, serializer: ModelSettingSerializer) -> None:
        from providers.services import model_setting_set

        data = dict(serializer.validated_data)
        serializer.instance = model_setting_set(
            organization=request_membership(self.request).organization,
            provider=data.pop("provider"),
            model=data.pop("model"),
            **data,
        )


class ModelSettingDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = ModelSettingSerializer
    permission_classes = [IsAuthenticated, IsOrgAdmin]
    http_method_names = ["get", "patch", "delete"]

    def get_queryset(self) -> QuerySet[ModelSetting]:
        return ModelSetting.objects.for_organization(request_membership(self.request).organization)
