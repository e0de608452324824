"""REST endpoints of accounts: who am I, and my personal API tokens."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api_members import urlpatterns as member_urlpatterns
from accounts.models import ApiToken, Membership
from accounts.tenancy import request_membership
from accounts.tokens import member_token_issue, member_token_revoke


class MembershipSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="organization.slug")
    organization_name = serializers.CharField(source="organization.name")

    class Meta:
        model = Membership
        fields = ["organization", "organization_name", "role"]


class MeSerializer(serializers.Serializer):
    email = serializers.EmailField()
    full_name = serializers.CharField()
    memberships = MembershipSerializer(many=True)
    current = MembershipSerializer()


class MeView(APIView):
    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        current = request_membership(request)
        data = {
            "email": request.user.email,
            "full_name": request.user.full_name,
            "memberships": Membership.objects.for_user(request.user),
            "current": current,
        }
        return Response(MeSerializer(data).data)


class ApiTokenSerializer(serializers.ModelSerializer):
    owner = serializers.EmailField(source="membership.user.email", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "owner",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]


class IssuedTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


def tokens_visible_to(membership: Membership) -> QuerySet[ApiToken]:
    """Admins see every token of their organisation, members their own."""
    tokens = ApiToken.objects.select_related("membership__user")
    if membership.is_admin:
        return tokens.for_organization(membership.organization)
    return tokens.for_membership(membership)


class TokenListCreate(generics.ListCreateAPIView):
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return tokens_visible_to(request_membership(self.request))

    @extend_schema(request=ApiTokenSerializer, responses={201: IssuedTokenSerializer})
    def post(self, request: Request) -> Response:
        serializer = ApiTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = member_token_issue(
            membership=request_membership(request),
            name=serializer.validated_data["name"],
            expires_at=serializer.validated_data.get("expires_at"),
            request=request,
        )
        body = IssuedTokenSerializer(issued.token).data | {"token": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenRevoke(APIView):
    @extend_schema(request=None, responses=ApiTokenSerializer)
    def post(self, request: Request, pk: int) -> Response:
        token = generics.get_object_or_404(tokens_visible_to(request_membership(request)), pk=pk)
        return Response(ApiTokenSerializer(member_token_revoke(token=token, request=request)).data)


urlpatterns = [
    path("me", MeView.as_view(), name="api-me"),
    path("tokens", TokenListCreate.as_view(), name="api-tokens"),
    path("tokens/<int:pk>/revoke", TokenRevoke.as_view(), name="api-token-revoke"),
    *member_urlpatterns,
]
