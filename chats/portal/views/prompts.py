"""System prompts: the member's own (create, edit, delete) and the organisation's shared ones
(admins write those)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chats import selectors
from chats.models import SystemPrompt
from chats.portal.access import member_required
from chats.portal.common import done, failed
from chats.portal.forms import PromptForm
from chats.services import chats as chat_services
from chats.services.errors import InputError
from config.errors import ApiError


def _apply_error(form: PromptForm, exc: ApiError) -> None:
    """A service's refusal, shown on the field it names (or on the whole form)."""
    if isinstance(exc, InputError) and exc.fields:
        for field, errors in exc.fields.items():
            target = field if field in form.fields else None
            for error in errors:
                form.add_error(target, error["message"])
    else:
        form.add_error(None, exc.message)


@require_http_methods(["GET", "POST"])
@member_required
def prompt_list(request: HttpRequest) -> HttpResponse:
    membership = request.membership
    form = PromptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            chat_services.system_prompt_create(membership=membership, **form.cleaned_data)
        except ApiError as exc:
            _apply_error(form, exc)
        else:
            return done(request, "portal:prompts", "System prompt saved.")
    prompts = list(selectors.system_prompt_list(membership=membership))
    context = {
        "form": form,
        "mine": [p for p in prompts if not p.shared],
        "shared": [p for p in prompts if p.shared],
    }
    status = 400 if form.errors else 200
    return render(request, "portal/prompts/list.html", context, status=status)


def _prompt(request: HttpRequest, prompt_id: int) -> SystemPrompt:
    return selectors.system_prompt_get_for_member(
        membership=request.membership, prompt_id=prompt_id
    )


def _may_write(request: HttpRequest, prompt: SystemPrompt) -> bool:
    return not prompt.shared or request.membership.is_admin


@require_http_methods(["GET", "POST"])
@member_required
def prompt_edit(request: HttpRequest, prompt_id: int) -> HttpResponse:
    prompt = _prompt(request, prompt_id)
    if not _may_write(request, prompt):
        raise Http404("No such system prompt.")
    initial = {"name": prompt.name, "content": prompt.content, "is_default": prompt.is_default}
    form = PromptForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            chat_services.system_prompt_update(
                membership=request.membership,
                prompt=prompt,
                name=data["name"],
                content=data["content"],
                is_default=data["is_default"],
            )
        except ApiError as exc:
            _apply_error(form, exc)
        else:
            return done(request, "portal:prompts", "System prompt saved.")
    context = {"form": form, "prompt": prompt}
    return render(request, "portal/prompts/edit.html", context, status=400 if form.errors else 200)


@require_POST
@member_required
def prompt_delete(request: HttpRequest, prompt_id: int) -> HttpResponse:
    prompt = _prompt(request, prompt_id)
    try:
        chat_services.system_prompt_delete(membership=request.membership, prompt=prompt)
    except ApiError as exc:
        return failed(request, "portal:prompts", exc, status=403)
    return redirect("portal:prompts")
