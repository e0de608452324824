"""Writes of chats and system prompts (the message path lives in `chats.services.messages`)."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from rest_framework import status

from accounts.models import Membership, Organization
from chats.models import Chat, SystemPrompt
from chats.selectors import system_prompt_default, system_prompt_get_for_member
from chats.services import presence
from chats.services.cancelling import deleted_announce
from chats.services.errors import InputError
from config.errors import ApiError
from providers.routing import RouteError, resolve

SYSTEM_PROMPT_MAX_CHARS = 32_000


class AdminRequired(ApiError):
    def __init__(self) -> None:
        super().__init__(
            "admin_required",
            "Only organisation admins may write prompts shared with the organisation.",
            status_code=status.HTTP_403_FORBIDDEN,
        )


def route_check(*, organization: Organization, provider: str, model: str) -> None:
    """A chat's default provider and model must route (else 400 with the field to blame)."""
    if not provider and not model:
        return
    try:
        resolve(organization=organization, provider=provider or None, model=model or None)
    except RouteError as exc:
        field = {"provider": "default_provider", "model": "default_model"}.get(exc.field, exc.field)
        raise InputError.one(field, exc.code, exc.message) from None


def chat_create(
    *,
    membership: Membership,
    title: str = "",
    system_prompt: str | None = None,
    system_prompt_id: int | None = None,
    default_provider: str = "",
    default_model: str = "",
) -> Chat:
    """A new chat. Its system prompt is the text given, else a copy of the saved prompt named by
    `system_prompt_id`, else a copy of the member's (or organisation's) default prompt. Copies:
    editing a saved prompt later does not rewrite existing conversations."""
    route_check(
        organization=membership.organization, provider=default_provider, model=default_model
    )
    if system_prompt is None:
        system_prompt = _prompt_text(membership, system_prompt_id)
    return Chat.objects.create(
        organization_id=membership.organization_id,
        owner_id=membership.user_id,
        title=title,
        system_prompt=system_prompt,
        default_provider=default_provider,
        default_model=default_model,
    )


def _prompt_text(membership: Membership, prompt_id: int | None) -> str:
    if prompt_id is not None:
        return system_prompt_get_for_member(membership=membership, prompt_id=prompt_id).content
    default = system_prompt_default(membership=membership)
    return default.content if default is not None else ""


_CHAT_FIELDS = frozenset({"title", "system_prompt", "default_provider", "default_model"})


def chat_update(
    *,
    chat: Chat,
    membership: Membership,
    system_prompt_id: int | None = None,
    **changes: str,
) -> Chat:
    """Change a chat's title, system prompt (text, or a copy of a saved prompt) or defaults."""
    unknown = set(changes) - _CHAT_FIELDS
    if unknown:
        raise TypeError(f"chat_update() got unexpected fields {sorted(unknown)}")
    if system_prompt_id is not None:
        changes["system_prompt"] = _prompt_text(membership, system_prompt_id)
    if {"default_provider", "default_model"} & set(changes):
        route_check(
            organization=membership.organization,
            provider=changes.get("default_provider", chat.default_provider),
            model=changes.get("default_model", chat.default_model),
        )
    for name, value in changes.items():
        setattr(chat, name, value)
    chat.save(update_fields=[*changes, "updated_at"])
    return chat


def chat_archive(*, chat: Chat, archived: bool = True) -> Chat:
    if chat.archived != archived:
        chat.archived = archived
        chat.save(update_fields=["archived", "updated_at"])
    return chat


def chat_delete(*, chat: Chat) -> None:
    """Delete the chat and its messages; its open sockets, in every process, are told and closed
    and an answer being generated in it is stopped. Usage records keep their chat id for the
    ledger."""
    with transaction.atomic():
        # Both read before `delete()`, which clears the row's id and takes the lock's row with
        # it; the origin under the rows' locks, so that no answer starts unseen in between.
        group = presence.group_name(chat)
        origin = presence.owner_channel(presence.holder_for_delete(chat_id=chat.pk))
        chat.delete()
        # Only once the deletion is certain; a channel layer that is down must not undo it.
        transaction.on_commit(partial(deleted_announce, group=group, origin=origin), robust=True)


# --- System prompts -----------------------------------------------------------------------


def _check_may_write(membership: Membership, *, shared: bool) -> None:
    if shared and not membership.is_admin:
        raise AdminRequired()


def _check_name_free(
    membership: Membership, *, name: str, shared: bool, exclude: int | None = None
) -> None:
    owner_id = None if shared else membership.user_id
    taken = SystemPrompt.objects.filter(
        organization_id=membership.organization_id, owner_id=owner_id, name=name
    ).exclude(pk=exclude)
    if taken.exists():
        raise InputError.one("name", "name_taken", f"A prompt named {name!r} already exists.")


def _clear_other_defaults(prompt: SystemPrompt) -> None:
    SystemPrompt.objects.filter(
        organization_id=prompt.organization_id, owner_id=prompt.owner_id, is_default=True
    ).exclude(pk=prompt.pk).update(is_default=False)


@transaction.atomic
def system_prompt_create(
    *,
    membership: Membership,
    name: str,
    content: str,
    shared: bool = False,
    is_default: bool = False,
) -> SystemPrompt:
    """A personal prompt, or one shared with the organisation (admins only). Making it the
    default unsets the previous default of the same scope."""
    _check_may_write(membership, shared=shared)
    _check_name_free(membership, name=name, shared=shared)
    prompt = SystemPrompt(
        organization_id=membership.organization_id,
        owner_id=None if shared else membership.user_id,
        name=name,
        content=content,
        is_default=is_default,
    )
    if is_default:
        _clear_other_defaults(prompt)
    prompt.save()
    return prompt


@transaction.atomic
def system_prompt_update(
    *,
    membership: Membership,
    prompt: SystemPrompt,
    name: str | None = None,
    content: str | None = None,
    is_default: bool | None = None,
) -> SystemPrompt:
    """Edit a prompt the caller may write: their own, or a shared one if they are an admin.
    Whether a prompt is shared does not change after creation."""
    _check_may_write(membership, shared=prompt.shared)
    if name is not None and name != prompt.name:
        _check_name_free(membership, name=name, shared=prompt.shared, exclude=prompt.pk)
        prompt.name = name
    if content is not None:
        prompt.content = content
    if is_default is not None:
        prompt.is_default = is_default
        if is_default:
            _clear_other_defaults(prompt)
    prompt.save()
    return prompt


def system_prompt_delete(*, membership: Membership, prompt: SystemPrompt) -> None:
    _check_may_write(membership, shared=prompt.shared)
    prompt.delete()
