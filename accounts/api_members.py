"""Members and the audit log over REST, for organisation admins."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import members
from accounts.models import AuditEvent, Membership
from accounts.permissions import IsOrgAdmin
from accounts.tenancy import request_membership


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "full_name", "role", "created_at"]
        read_only_fields = ["created_at"]


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


def _members(request: Request) -> QuerySet[Membership]:
    organization = request_membership(request).organization
    return Membership.objects.filter(organization=organization).select_related("user")


class MemberList(generics.ListCreateAPIView):
    serializer_class = MemberSerializer
    permission_classes = [IsAuthenticated, IsOrgAdmin]

    def get_queryset(self) -> QuerySet[Membership]:
        return _members(self.request).order_by("user__email")

    def create(self, request: Request) -> Response:
        serializer = MemberSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = members.member_invite(
            actor=request_membership(request),
            email=serializer.validated_data["user"]["email"],
            role=serializer.validated_data.get("role", Membership.Role.MEMBER),
            request=request,
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = MemberSerializer
    permission_classes = [IsAuthenticated, IsOrgAdmin]
    http_method_names = ["get", "patch", "delete"]

    def get_queryset(self) -> QuerySet[Membership]:
        return _members(self.request)

    @extend_schema(request=RoleSerializer, responses=MemberSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        serializer = RoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = members.member_set_role(
            actor=request_membership(request),
            membership=self.get_object(),
            role=serializer.validated_data["role"],
            request=request,
        )
        return Response(MemberSerializer(membership).data)

    def perform_destroy(self, instance: Membership) -> None:
        members.member_remove(
            actor=request_membership(self.request), membership=instance, request=self.request
        )


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "action",
            "actor_label",
            "target_type",
            "target_id",
            "target_label",
            "summary",
            "ip_address",
        ]


class AuditList(generics.ListAPIView):
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuthenticated, IsOrgAdmin]

    @extend_schema(
        parameters=[OpenApiParameter("action", str, description="e.g. credential.rotated")]
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        events = AuditEvent.objects.for_organization(request_membership(self.request).organization)
        action = self.request.query_params.get("action")
        return events.filter(action=action) if action else events


urlpatterns = [
    path("members", MemberList.as_view(), name="api-members"),
    path("members/<int:pk>", MemberDetail.as_view(), name="api-member"),
    path("audit", AuditList.as_view(), name="api-audit"),
]
