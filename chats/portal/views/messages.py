"""JSON endpoints of the chat page's script: one answer rendered on the server (after it
streamed as plain text), and the member's remaining budget."""

from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_safe

from chats import selectors
from chats.portal.access import member_required
from chats.portal.budget import answer_costs, budget_lines
from chats.portal.display import message_view
from chats.portal.views.chats import chat_of


@require_safe
@member_required
def message_html(request: HttpRequest, chat_id: int, message_id: int) -> JsonResponse:
    """The sanitised HTML of one message of one of the caller's chats; anyone else gets 404."""
    membership = request.membership
    chat = chat_of(membership, chat_id)
    message = selectors.message_list(chat=chat).filter(pk=message_id).first()
    if message is None:
        raise Http404("No such message.")
    cost = answer_costs(membership=membership, request_ids=[message.request_id])
    html = render_to_string(
        "portal/chats/_message.html",
        message_view(message, cost.get(message.request_id)),
        request=request,
    )
    # The first message names the chat: the page shows the new title without a reload.
    body = {"id": message.pk, "status": message.status, "html": html, "chat_title": str(chat)}
    return JsonResponse(body)


@require_safe
@member_required
def budget_html(request: HttpRequest) -> JsonResponse:
    html = render_to_string(
        "portal/chats/_budget.html",
        {"budget": budget_lines(membership=request.membership)},
        request=request,
    )
    return JsonResponse({"html": html})
