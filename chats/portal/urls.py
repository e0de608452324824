"""The portal's pages. Included at the site root by config/urls.py."""

from __future__ import annotations

from django.urls import path

from chats.portal.views import (
    chats,
    credentials,
    limits,
    members,
    messages,
    prompts,
    switcher,
    tokens,
    usage,
)

app_name = "portal"

urlpatterns = [
    path("", chats.home, name="home"),
    # Chats
    path("chats/", chats.chat_list, name="chats"),
    path("chats/new", chats.chat_new, name="chat-new"),
    path("chats/<int:chat_id>/", chats.chat_detail, name="chat"),
    path("chats/<int:chat_id>/rename", chats.chat_rename, name="chat-rename"),
    path("chats/<int:chat_id>/archive", chats.chat_archive, name="chat-archive"),
    path("chats/<int:chat_id>/delete", chats.chat_delete, name="chat-delete"),
    path("chats/<int:chat_id>/settings", chats.chat_settings, name="chat-settings"),
    path("chats/<int:chat_id>/system-prompt", chats.chat_system_prompt, name="chat-prompt"),
    path(
        "chats/<int:chat_id>/messages/<int:message_id>/html",
        messages.message_html,
        name="message-html",
    ),
    path("portal/budget", messages.budget_html, name="budget"),
    # System prompts and personal API tokens
    path("prompts/", prompts.prompt_list, name="prompts"),
    path("prompts/<int:prompt_id>/edit", prompts.prompt_edit, name="prompt-edit"),
    path("prompts/<int:prompt_id>/delete", prompts.prompt_delete, name="prompt-delete"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/<int:token_id>/revoke", tokens.token_revoke_view, name="token-revoke"),
    # The organisation: switcher and admin pages
    path("org/switch", switcher.org_switch, name="org-switch"),
    path("org/members/", members.member_list, name="members"),
    path("org/members/<int:member_id>/role", members.member_role, name="member-role"),
    path("org/members/<int:member_id>/remove", members.member_remove, name="member-remove"),
    path("org/credentials/", credentials.credential_list, name="credentials"),
    path("org/credentials/<int:credential_id>/", credentials.credential_edit, name="credential"),
    path(
        "org/credentials/<int:credential_id>/test",
        credentials.credential_test,
        name="credential-test",
    ),
    path(
        "org/credentials/<int:credential_id>/rotate",
        credentials.credential_rotate,
        name="credential-rotate",
    ),
    path(
        "org/credentials/<int:credential_id>/toggle",
        credentials.credential_toggle,
        name="credential-toggle",
    ),
    path(
        "org/credentials/<int:credential_id>/delete",
        credentials.credential_delete,
        name="credential-delete",
    ),
    path("org/limits/", limits.limit_list, name="limits"),
    path("org/limits/<int:limit_id>/", limits.limit_edit, name="limit-edit"),
    path("org/limits/<int:limit_id>/delete", limits.limit_delete, name="limit-delete"),
    path("org/usage/", usage.usage_page, name="usage"),
    path("org/usage.csv", usage.usage_csv, name="usage-csv"),
]
