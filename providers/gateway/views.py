"""The gateway's views: plain async Django views (no DRF on the hot path: its sync request
wrapping and content negotiation would cost a thread hop and a few hundred microseconds).

One request: token (one query) → request parsing → route (cached model lists) → admission →
provider call through `providers.calls` (retries, fallback) → answer or stream → settlement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiToken, Membership, Organization
from accounts.tokens import TokenError, atoken_authenticate, bearer_from_header
from config import inflight
from config.errors import INTERNAL_ERROR
from providers.adapters.base import ChatTurn, ProviderError, Usage, build_usage
from providers.calls import CallFailed, CallParams, Candidate, complete, open_stream
from providers.catalogue import provider_listings
from providers.gateway import billing, wire
from providers.gateway.billing import Ledger
from providers.gateway.streaming import DISCONNECTED, DRAIN_SECONDS, GatewayStream
from providers.routing import Route, RouteError, aresolve

logger = logging.getLogger(__name__)

INTERNAL = INTERNAL_ERROR
_AUTH_HEADERS = {"WWW-Authenticate": 'Bearer realm="gatehouse"'}


# --- Views ------------------------------------------------------------------------------------


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    started = time.monotonic()
    if request.method != "POST":
        return _method_not_allowed("POST")
    try:
        token = await _authenticate(request)
        chat = wire.parse_chat_request(_body(request))
        membership = token.membership
        route = await _route(membership.organization, chat.model)
        return await _serve(membership, route, chat, started)
    except wire.WireError as error:
        return error_response(error)
    except Exception:
        # A bug: the client still gets an error its SDK understands (details in the log).
        logger.exception("gateway request failed")
        return error_response(
            wire.WireError(500, INTERNAL, "The gateway failed to handle this request.")
        )


@csrf_exempt
async def list_models(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        token = await _authenticate(request)
    except wire.WireError as error:
        return error_response(error)
    models = await allowed_models(token.membership.organization)
    return json_response(wire.models_body(models))


@csrf_exempt
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponseBase:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        token = await _authenticate(request)
    except wire.WireError as error:
        return error_response(error)
    for model_id, owner in await allowed_models(token.membership.organization):
        if model_id == model:
            return json_response(wire.model_object(model_id, owner))
    return error_response(
        wire.WireError(404, "unknown_model", f"Unknown model {model!r}.", param="model")
    )


# --- Responses --------------------------------------------------------------------------------


def json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    # json.dumps directly: JsonResponse's DjangoJSONEncoder is slower and nothing here needs it.
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def error_response(error: wire.WireError) -> HttpResponse:
    response = json_response(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def _method_not_allowed(allowed: str) -> HttpResponse:
    error = wire.WireError(405, "method_not_allowed", f"Use {allowed} on this endpoint.")
    response = error_response(error)
    response["Allow"] = allowed
    return response


# --- Request steps ----------------------------------------------------------------------------


async def _authenticate(request: HttpRequest) -> ApiToken:
    raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
    if not raw:
        raise wire.WireError(
            401,
            "token_missing",
            "An API token is required: send 'Authorization: Bearer <token>'.",
            headers=_AUTH_HEADERS,
        )
    try:
        return await atoken_authenticate(raw)
    except TokenError as exc:
        raise wire.WireError(401, exc.code, exc.message, headers=_AUTH_HEADERS) from None


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise wire.WireError(413, "request_too_large", "The request body is too large.") from None


async def _route(organization: Organization, model: str) -> Route:
    """`provider/model`, or a bare model name offered by one provider of the organisation (or
    by several, one of which is the organisation's default provider)."""
    provider, slash, name = model.partition("/")
    unknown_provider: RouteError | None = None
    if slash and provider and name:
        try:
            return await aresolve(organization=organization, provider=provider, model=name)
        except RouteError as exc:
            # Model names may contain slashes themselves (`meta-llama/Llama-3-8B`).
            if exc.code != "unknown_provider":
                raise _route_error(exc) from None
            unknown_provider = exc
    try:
        provider_name = await _provider_offering(organization, model)
        return await aresolve(organization=organization, provider=provider_name, model=model)
    except RouteError as exc:
        # Not a bare name either: the provider part was what the client got wrong.
        raise _route_error(unknown_provider or exc) from None


async def _provider_offering(organization: Organization, model: str) -> str | None:
    offering = [p for m, p in await allowed_models(organization) if m == f"{p}/{model}"]
    if len(offering) > 1 and organization.default_provider in offering:
        return organization.default_provider
    if len(offering) > 1:
        raise wire.WireError(
            400,
            "ambiguous_model",
            f"Model {model!r} is offered by several providers ({', '.join(offering)}): "
            "name one, as in 'provider/model'.",
            param="model",
        )
    # None lets routing try credentials whose model listing failed.
    return offering[0] if offering else None


def _route_error(exc: RouteError) -> wire.WireError:
    # Whatever the reason (no such provider, model, or switched off), the model named cannot
    # be used: OpenAI answers that with a 404.
    return wire.WireError(404, exc.code, exc.message, param="model")


async def allowed_models(organization: Organization) -> list[tuple[str, str]]:
    """(`provider/model`, provider) of every model the organisation allows."""
    listings = await provider_listings(organization)
    return [
        (f"{listing.name}/{model['id']}", listing.name)
        for listing in listings
        for model in listing.models
        if model["enabled"]
    ]


def _max_tokens(chat: wire.ChatRequest, route: Route) -> int:
    """The call's output cap, explicit so that admission reserves for what the call may use."""
    ceiling = route.limits.max_output_tokens
    if chat.max_tokens is not None:
        if chat.max_tokens > ceiling:
            raise wire.invalid(
                f"'max_tokens' is too large: this model allows at most {ceiling}.", "max_tokens"
            )
        return chat.max_tokens
    default = route.candidates[0].endpoint.default_max_tokens
    return min(default or settings.GATEHOUSE_DEFAULT_MAX_TOKENS, ceiling)


async def _serve(
    membership: Membership, route: Route, chat: wire.ChatRequest, started: float
) -> HttpResponseBase:
    max_tokens = _max_tokens(chat, route)
    request_id = uuid.uuid4().hex  # never the client's X-Request-ID: it keys the ledger
    ledger = await billing.admit(
        request_id=request_id,
        membership=membership,
        route=route,
        messages=chat.messages,
        max_tokens=max_tokens,
        started=started,
    )
    params = CallParams(
        temperature=chat.temperature, max_tokens=max_tokens, stop=chat.stop, top_p=chat.top_p
    )
    answer = Answer(
        completion_id=f"chatcmpl-{request_id}",
        created=int(time.time()),
        model=f"{route.provider}/{route.model}",
    )
    if chat.stream:
        return await _stream(ledger, route, chat, params, answer)
    return await _complete(ledger, route, chat, params, answer)


@dataclass(frozen=True, slots=True)
class Answer:
    """What every response of one call repeats: its id, creation time and model name."""

    completion_id: str
    created: int
    model: str


# --- Calling the provider ---------------------------------------------------------------------


async def _complete(
    ledger: Ledger, route: Route, chat: wire.ChatRequest, params: CallParams, answer: Answer
) -> HttpResponse:
    # Its own task, so that a client hanging up does not cancel the provider call: the provider
    # bills the answer anyway, and so must we. Kept, so that a server's shutdown waits for it too.
    task = inflight.keep(complete(route.candidates, chat.messages, params=params))
    try:
        completion, candidate = await asyncio.shield(task)
    except asyncio.CancelledError:
        ledger.settle_later(_settle_abandoned_completion(ledger, task, chat.messages))
        raise
    except ProviderError as error:
        await ledger.settle(
            candidate=_last_tried(error), usage=None, status="error", error_code=error.code
        )
        raise wire.from_provider_error(error) from None
    except Exception:
        await ledger.settle(candidate=None, usage=None, status="error", error_code=INTERNAL)
        raise
    ledger.settle_after_answer(candidate=candidate, usage=completion.usage, status="ok")
    body = wire.completion_body(
        completion_id=answer.completion_id,
        created=answer.created,
        model=answer.model,
        text=completion.text,
        finish=completion.finish_reason,
        usage=completion.usage,
    )
    return json_response(body)


async def _settle_abandoned_completion(
    ledger: Ledger, task: asyncio.Task[Any], messages: list[ChatTurn]
) -> None:
    candidate: Candidate | None = None
    usage: Usage | None = None
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            completion, candidate = await task
        usage = completion.usage
    except Exception as exc:
        if not isinstance(exc, TimeoutError | ProviderError):
            logger.exception("abandoned gateway call %s failed", ledger.request_id)
        # No answer to bill by: the prompt, estimated, is what the provider may have read.
        task.cancel()
        usage = build_usage(None, 0, messages, ())
    await ledger.detached_settle(
        candidate=candidate, usage=usage, status="cancelled", error_code=DISCONNECTED
    )


async def _stream(
    ledger: Ledger, route: Route, chat: wire.ChatRequest, params: CallParams, answer: Answer
) -> HttpResponseBase:
    try:
        stream = await open_stream(route.candidates, chat.messages, params=params)
    except asyncio.CancelledError:
        # Hung up before the first token: the provider call is cancelled with the request.
        usage = build_usage(None, 0, chat.messages, ())
        ledger.settle_later(
            ledger.detached_settle(
                candidate=None, usage=usage, status="cancelled", error_code=DISCONNECTED
            )
        )
        raise
    except ProviderError as error:
        await ledger.settle(
            candidate=_last_tried(error), usage=None, status="error", error_code=error.code
        )
        raise wire.from_provider_error(error) from None
    except Exception:
        await ledger.settle(candidate=None, usage=None, status="error", error_code=INTERNAL)
        raise
    ledger.first_token()
    chunks = wire.ChunkFormat(
        completion_id=answer.completion_id,
        created=answer.created,
        model=answer.model,
        include_usage=chat.include_usage,
    )
    body = GatewayStream(
        stream=stream,
        ledger=ledger,
        chunks=chunks,
        messages=chat.messages,
        include_usage=chat.include_usage,
    )
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Proxies such as nginx would otherwise buffer the stream.
    response["X-Accel-Buffering"] = "no"
    return response


def _last_tried(error: ProviderError) -> Candidate | None:
    """The candidate of the last attempt, to attribute a failed call in the ledger."""
    if isinstance(error, CallFailed) and error.attempts:
        return error.attempts[-1][0]
    return None
