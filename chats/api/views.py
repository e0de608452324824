"""REST views of chats: thin — validate, call a service, serialise."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, pagination, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken, Membership
from accounts.tenancy import request_membership
from chats.api.serializers import (
    ChatSerializer,
    ChatWriteSerializer,
    ErrorSerializer,
    LegacyChatRequestSerializer,
    LegacyChatResponseSerializer,
    MessageCreateSerializer,
    MessageSerializer,
    SystemPromptSerializer,
)
from chats.models import Chat, Message, SystemPrompt
from chats.selectors import chat_get_for_member, chat_list, message_list, system_prompt_list
from chats.services import chats as chat_services
from chats.services.cancelling import generation_cancel
from chats.services.errors import ChatNotFound
from chats.services.inputs import message_input_parse
from chats.services.messages import Reply, message_send
from config.dbhop import wait_unpooled
from config.errors import request_id_of

_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input; see `error.fields`."),
    404: OpenApiResponse(ErrorSerializer, description="No such chat (or not yours)."),
}
_SEND_ERRORS = {
    **_ERRORS,
    402: OpenApiResponse(ErrorSerializer, description="A hard spending limit is reached."),
    409: OpenApiResponse(ErrorSerializer, description="An answer is already being generated."),
    429: OpenApiResponse(ErrorSerializer, description="Rate limited; see Retry-After."),
    502: OpenApiResponse(ErrorSerializer, description="The provider failed; message saved."),
    503: OpenApiResponse(ErrorSerializer, description="Provider or limits unavailable."),
    504: OpenApiResponse(ErrorSerializer, description="The provider did not answer in time."),
}


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _membership(request: Request) -> Membership:
    return request_membership(request)


def _token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def _ledger_request_id(request: Request) -> str:
    """The provider call's request id, which keys its usage record. The HTTP request id when the
    server made it (one id in logs, errors and ledger); never one a client chose, which could
    collide with another call's record."""
    incoming = request.headers.get("X-Request-ID")
    rid = request_id_of(request)
    return rid if incoming != rid else uuid.uuid4().hex


def _send(request: Request, chat_id: int, data: Any, content_field: str = "content") -> Reply:
    message = message_input_parse(data, content_field=content_field)
    return wait_unpooled(
        message_send,
        membership=_membership(request),
        chat_id=chat_id,
        message=message,
        token=_token(request),
        request_id=_ledger_request_id(request),
    )


# --- Chats ---------------------------------------------------------------------------------


@extend_schema(tags=["chats"])
class ChatViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's chats in the organisation the request acts in, newest first."""

    serializer_class = ChatSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Chat]:
        if getattr(self, "swagger_fake_view", False):
            return Chat.objects.none()
        membership = _membership(self.request)
        if self.action == "list":
            archived = self.request.query_params.get("archived", "").lower() in ("1", "true")
            return chat_list(membership=membership, archived=archived)
        return Chat.objects.for_member(membership)

    @extend_schema(
        parameters=[OpenApiParameter("archived", bool, description="List archived chats instead.")]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ChatWriteSerializer, responses={201: ChatSerializer, **_ERRORS})
    def create(self, request: Request) -> Response:
        serializer = ChatWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        chat = chat_services.chat_create(
            membership=_membership(request), **serializer.validated_data
        )
        return Response(ChatSerializer(chat).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ChatWriteSerializer, responses={200: ChatSerializer, **_ERRORS})
    def partial_update(self, request: Request, pk: int) -> Response:
        chat = self.get_object()
        serializer = ChatWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        chat = chat_services.chat_update(
            chat=chat, membership=_membership(request), **serializer.validated_data
        )
        return Response(ChatSerializer(chat).data)

    def perform_destroy(self, instance: Chat) -> None:
        chat_services.chat_delete(chat=instance)

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(
                description="A cancel was sent to the answer being generated; the request that "
                "sent the message (or the socket) gets it saved `cancelled` with the text so far."
            ),
            404: _ERRORS[404],
            409: OpenApiResponse(
                ErrorSerializer, description="`not_generating`: no answer is being generated."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: int) -> Response:
        """Stop the answer being generated in the chat, wherever it runs: a REST request waiting
        for it, or a socket (in any server process)."""
        generation_cancel(chat=self.get_object())
        return Response(status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: ChatSerializer, 404: _ERRORS[404]})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: int) -> Response:
        chat = chat_services.chat_archive(chat=self.get_object(), archived=True)
        return Response(ChatSerializer(chat).data)

    @extend_schema(request=None, responses={200: ChatSerializer, 404: _ERRORS[404]})
    @action(detail=True, methods=["post"])
    def unarchive(self, request: Request, pk: int) -> Response:
        chat = chat_services.chat_archive(chat=self.get_object(), archived=False)
        return Response(ChatSerializer(chat).data)


# --- Messages ------------------------------------------------------------------------------


@extend_schema(tags=["chats"])
class ChatMessageList(generics.ListAPIView):
    """A chat's messages, oldest first. POST sends a message and answers with the finished
    assistant message (for clients that do not stream; the WebSocket streams) — `cancelled`, with
    the text so far, when `POST /api/chats/{id}/cancel` or a socket's `cancel` stopped it."""

    serializer_class = MessageSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        chat = chat_get_for_member(
            membership=_membership(self.request), chat_id=self.kwargs["chat_id"]
        )
        return message_list(chat=chat).select_related("usage")

    @extend_schema(
        request=MessageCreateSerializer, responses={201: MessageSerializer, **_SEND_ERRORS}
    )
    def post(self, request: Request, chat_id: int) -> Response:
        reply = _send(request, chat_id, request.data)
        # Cancelled answers are returned too (status `cancelled`, the text so far); the chat may
        # have been deleted while the answer ran.
        message = Message.objects.select_related("usage").filter(pk=reply.message_id).first()
        if message is None:
            raise ChatNotFound()
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["legacy"],
    request=LegacyChatRequestSerializer,
    responses={200: LegacyChatResponseSerializer, **_SEND_ERRORS},
)
class LegacyChat(APIView):
    """The original design's route, kept for its clients: one message in, the answer out."""

    def post(self, request: Request, chat_id: int) -> Response:
        reply = _send(request, chat_id, request.data, content_field="message")
        return Response({"response": reply.content})


@extend_schema(exclude=True)
class LegacyChatSlash(LegacyChat):
    """The same, spelled with a trailing slash."""


# --- System prompts ------------------------------------------------------------------------


@extend_schema(tags=["system prompts"])
class SystemPromptViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's personal prompts and those shared with the organisation. Only organisation
    admins create, edit or delete shared ones."""

    serializer_class = SystemPromptSerializer
    pagination_class = Pagination

    def get_queryset(self) -> QuerySet[SystemPrompt]:
        if getattr(self, "swagger_fake_view", False):
            return SystemPrompt.objects.none()
        return system_prompt_list(membership=_membership(self.request))

    @extend_schema(responses={201: SystemPromptSerializer, **_ERRORS})
    def create(self, request: Request) -> Response:
        serializer = SystemPromptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prompt = chat_services.system_prompt_create(
            membership=_membership(request), **serializer.validated_data
        )
        return Response(SystemPromptSerializer(prompt).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: SystemPromptSerializer, **_ERRORS})
    def partial_update(self, request: Request, pk: int) -> Response:
        prompt = self.get_object()
        serializer = SystemPromptSerializer(prompt, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if k != "shared"}
        prompt = chat_services.system_prompt_update(
            membership=_membership(request), prompt=prompt, **data
        )
        return Response(SystemPromptSerializer(prompt).data)

    def perform_destroy(self, instance: SystemPrompt) -> None:
        chat_services.system_prompt_delete(membership=_membership(self.request), prompt=instance)
