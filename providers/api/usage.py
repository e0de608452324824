"""GET /api/usage — the ledger, filtered, grouped, totalled, or exported as CSV.

Members see their own calls; organisation admins see the whole organisation. Filters: `from`
and `to` (a date — a whole day in the organisation's time zone, `to` inclusive — or an ISO
datetime, `to` exclusive), `member` (a user id), `provider`, `model`, `status`. `group_by`:
one or more of day, member, provider, model (comma-separated). `?format=csv` streams exactly
the filtered rows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import renderers, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from accounts.tenancy import request_membership
from providers.models import UsageRecord
from providers.reports import (
    GROUPS,
    usage_csv,
    usage_filter,
    usage_groups,
    usage_totals,
    usage_visible_to,
)


class CSVRenderer(renderers.BaseRenderer):
    """Lets `?format=csv` select the export; the rows themselves are streamed by the view.
    Anything else reaching it (an error body) is written as `field,value` lines."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        if isinstance(data, str | bytes):
            return data
        flat = (data or {}).get("error", data) if isinstance(data, dict) else {"data": data}
        return "".join(f"{key},{value}\n" for key, value in flat.items())


# --- query parameters -----------------------------------------------------------------------


class DateOrDateTimeField(serializers.Field):
    """A date (a whole day in the organisation's time zone) or an ISO datetime."""

    def to_internal_value(self, data: Any) -> date | datetime:
        text = str(data)
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(text)
            except ValueError:
                continue
        raise serializers.ValidationError("Use a date (YYYY-MM-DD) or an ISO 8601 datetime.")

    def to_representation(self, value: Any) -> str:
        return value.isoformat()


class UsageQuerySerializer(serializers.Serializer):
    start = DateOrDateTimeField(required=False, source="from")
    to = DateOrDateTimeField(required=False)
    member = serializers.IntegerField(required=False, min_value=1)
    provider = serializers.CharField(required=False, max_length=50)
    model = serializers.CharField(required=False, max_length=200)
    status = serializers.ChoiceField(choices=UsageRecord.Status.choices, required=False)
    group_by = serializers.CharField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # "from" is a Python keyword: accept it as the query parameter's name.
        data = {("start" if key == "from" else key): value for key, value in data.items()}
        return super().to_internal_value(data)

    def validate_group_by(self, value: str) -> list[str]:
        keys = [key.strip() for key in value.split(",") if key.strip()]
        unknown = [key for key in keys if key not in GROUPS]
        if unknown or not keys:
            raise serializers.ValidationError(f"Group by any of: {', '.join(GROUPS)}.")
        return list(dict.fromkeys(keys))


# --- serializers ----------------------------------------------------------------------------


class UsageRecordSerializer(serializers.ModelSerializer):
    member = serializers.IntegerField(source="user_id", allow_null=True, read_only=True)
    member_email = serializers.EmailField(
        source="user.email", allow_null=True, default=None, read_only=True
    )
    credential = serializers.IntegerField(source="credential_id", allow_null=True, read_only=True)
    unpriced = serializers.BooleanField(
        read_only=True, help_text="No known price: cost unknown, or charged at a default price."
    )

    class Meta:
        model = UsageRecord
        fields = [
            "request_id",
            "created_at",
            "member",
            "member_email",
            "chat_id",
            "provider",
            "model",
            "credential",
            "input_tokens",
            "output_tokens",
            "tokens_estimated",
            "cost",
            "price_source",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "unpriced",
            "status",
            "error_code",
            "latency_ms",
            "ttft_ms",
        ]


class TotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(
        max_digits=30, decimal_places=10, help_text="Sum of known costs (USD)."
    )
    unpriced_requests = serializers.IntegerField(
        help_text="Calls without a known price (cost unknown) or charged at a default price."
    )
    estimated_requests = serializers.IntegerField()
    error_requests = serializers.IntegerField()


class GroupSerializer(TotalsSerializer):
    error_rate = serializers.FloatField()
    day = serializers.DateField(required=False)
    member = serializers.IntegerField(required=False, allow_null=True)
    email = serializers.EmailField(required=False, allow_null=True)
    provider = serializers.CharField(required=False)
    model = serializers.CharField(required=False)


class UsageResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField(required=False, help_text="Rows matching (ungrouped).")
    next = serializers.URLField(required=False, allow_null=True)
    previous = serializers.URLField(required=False, allow_null=True)
    results = UsageRecordSerializer(many=True, required=False, help_text="Ungrouped: a page.")
    group_by = serializers.ListField(child=serializers.CharField(), required=False)
    groups = GroupSerializer(many=True, required=False, help_text="Grouped: every group.")
    totals = TotalsSerializer()


# --- view -----------------------------------------------------------------------------------

_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="Date (local day) or ISO datetime."),
    OpenApiParameter("to", OpenApiTypes.STR, description="Date (inclusive) or ISO datetime."),
    OpenApiParameter("member", OpenApiTypes.INT, description="A user id (admins)."),
    OpenApiParameter("provider", OpenApiTypes.STR),
    OpenApiParameter("model", OpenApiTypes.STR),
    OpenApiParameter("status", OpenApiTypes.STR, enum=UsageRecord.Status.values),
    OpenApiParameter(
        "group_by", OpenApiTypes.STR, description="day, member, provider, model (comma-separated)"
    ),
    OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
    OpenApiParameter("page", OpenApiTypes.INT),
]


class UsageView(APIView):
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=_PARAMETERS,
        responses={
            (200, "application/json"): UsageResponseSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        membership = request_membership(request)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        organization = membership.organization
        rows = usage_filter(usage_visible_to(membership), organization=organization, params=params)
        if request.accepted_renderer.format == "csv":
            return self._csv(rows, organization)
        if "group_by" in params:
            groups = usage_groups(rows, keys=params["group_by"], organization=organization)
            body = {"group_by": params["group_by"], "groups": groups}
            return Response(UsageResponseSerializer(body | {"totals": usage_totals(rows)}).data)
        return self._page(request, rows)

    def _page(self, request: Request, rows: QuerySet[UsageRecord]) -> Response:
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(rows.select_related("user"), request, view=self)
        body = {
            "count": paginator.page.paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "results": page,
            "totals": usage_totals(rows),
        }
        return Response(UsageResponseSerializer(body).data)

    def _csv(self, rows: QuerySet[UsageRecord], organization: Organization) -> Any:
        response = StreamingHttpResponse(usage_csv(rows), content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime(timezone=organization.tzinfo).strftime("%Y%m%d-%H%M")
        name = f"usage-{organization.slug}-{stamp}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


urlpatterns = [path("usage", UsageView.as_view(), name="api-usage")]
