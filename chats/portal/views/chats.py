"""Chat pages: the list (newest first, rename, archive, delete) and the chat itself."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from accounts.models import Membership
from chats import selectors
from chats.models import Chat
from chats.portal.access import member_required
from chats.portal.budget import answer_costs, budget_lines
from chats.portal.common import done, failed, form_errors
from chats.portal.display import message_view
from chats.portal.forms import ChatSettingsForm, RenameForm, SystemPromptTextForm
from chats.portal.picker import picker_for
from chats.portal.states import FAILURES, GENERIC, STATUS_LABELS
from chats.services import chats as chat_services
from chats.services.errors import ChatNotFound
from config.errors import ApiError


def chat_of(membership: Membership, chat_id: int) -> Chat:
    """The tenant gate, as a page sees it: another member's or organisation's chat is a 404."""
    try:
        return selectors.chat_get_for_member(membership=membership, chat_id=chat_id)
    except ChatNotFound:
        raise Http404("No such chat.") from None


@require_safe
@member_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("portal:chats")


@require_safe
@member_required
def chat_list(request: HttpRequest) -> HttpResponse:
    archived = request.GET.get("archived") == "1"
    membership = request.membership
    return render(
        request,
        "portal/chats/list.html",
        {
            "chats": selectors.chat_list(membership=membership, archived=archived),
            "archived": archived,
            "prompts": selectors.system_prompt_list(membership=membership),
        },
    )


@require_POST
@member_required
def chat_new(request: HttpRequest) -> HttpResponse:
    form = ChatSettingsForm(request.POST)
    if not form.is_valid():
        return failed(request, "portal:chats", form_errors(form))
    try:
        chat = chat_services.chat_create(
            membership=request.membership,
            system_prompt_id=form.cleaned_data["system_prompt_id"],
        )
    except (ApiError, Http404) as exc:
        return failed(request, "portal:chats", _refusal(exc))
    return redirect("portal:chat", chat_id=chat.pk)


def _refusal(exc: Exception) -> ApiError | str:
    return exc if isinstance(exc, ApiError) else "No such system prompt."


@require_safe
@member_required
def chat_detail(request: HttpRequest, chat_id: int) -> HttpResponse:
    membership = request.membership
    chat = chat_of(membership, chat_id)
    history = list(selectors.message_list(chat=chat))
    costs = answer_costs(membership=membership, request_ids=[m.request_id for m in history])
    picker = picker_for(organization=membership.organization, chat=chat)
    context = {
        "chat": chat,
        "chats": selectors.chat_list(membership=membership)[:30],
        "history": [message_view(m, costs.get(m.request_id)) for m in history],
        "picker": picker,
        "picker_json": picker.as_json(),
        "prompts": selectors.system_prompt_list(membership=membership),
        "budget": budget_lines(membership=membership),
        "states_json": {"failures": FAILURES, "generic": GENERIC, "statuses": STATUS_LABELS},
        "socket_path": f"/ws/chats/{chat.pk}/",
    }
    return render(request, "portal/chats/chat.html", context)


@require_POST
@member_required
def chat_rename(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = chat_of(request.membership, chat_id)
    back = _back(request, chat)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return failed(request, back, form_errors(form))
    chat_services.chat_update(
        chat=chat, membership=request.membership, title=form.cleaned_data["title"]
    )
    return done(request, back, "Chat renamed.", title=chat.title)


@require_POST
@member_required
def chat_archive(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = chat_of(request.membership, chat_id)
    archived = request.POST.get("archived", "1") == "1"
    chat_services.chat_archive(chat=chat, archived=archived)
    text = "Chat archived." if archived else "Chat restored."
    return done(request, reverse("portal:chats"), text)


@require_POST
@member_required
def chat_delete(request: HttpRequest, chat_id: int) -> HttpResponse:
    chat = chat_of(request.membership, chat_id)
    chat_services.chat_delete(chat=chat)
    return done(request, reverse("portal:chats"), "Chat deleted.")


@require_POST
@member_required
def chat_settings(request: HttpRequest, chat_id: int) -> HttpResponse:
    """The chat remembers its provider and model (and takes a saved system prompt)."""
    chat = chat_of(request.membership, chat_id)
    back = reverse("portal:chat", args=[chat.pk])
    form = ChatSettingsForm(request.POST)
    if not form.is_valid():
        return failed(request, back, form_errors(form))
    data = form.cleaned_data
    # A form posts only what it changes: the prompt picker must not clear the model choice.
    changes = {
        f"default_{name}": data[name] for name in ("provider", "model") if name in request.POST
    }
    try:
        chat_services.chat_update(
            chat=chat,
            membership=request.membership,
            system_prompt_id=data["system_prompt_id"],
            **changes,
        )
    except (ApiError, Http404) as exc:
        return failed(request, back, _refusal(exc))
    text = "Chat settings saved."
    return done(request, back, text, provider=chat.default_provider, model=chat.default_model)


@require_POST
@member_required
def chat_system_prompt(request: HttpRequest, chat_id: int) -> HttpResponse:
    """The chat's own system prompt, written by hand (a saved prompt goes through settings)."""
    chat = chat_of(request.membership, chat_id)
    back = reverse("portal:chat", args=[chat.pk])
    form = SystemPromptTextForm(request.POST)
    if not form.is_valid():
        return failed(request, back, form_errors(form))
    chat_services.chat_update(
        chat=chat, membership=request.membership, system_prompt=form.cleaned_data["system_prompt"]
    )
    return done(request, back, "System prompt saved.")


def _back(request: HttpRequest, chat: Chat) -> str:
    if request.POST.get("from") == "chat":
        return reverse("portal:chat", args=[chat.pk])
    return reverse("portal:chats")
