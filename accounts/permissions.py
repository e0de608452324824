"""DRF permissions on top of the organisation the request acts in."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.tenancy import request_membership


class IsOrgAdmin(BasePermission):
    """Owners and admins of the request's organisation; members get 403."""

    message = "Only organisation admins may do this."
    code = "admin_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request_membership(request).is_admin
