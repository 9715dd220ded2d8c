"""`Idempotency-Key` on POST operations (API.md "Idempotency-Key"; Stripe's semantics).

Put `@idempotent` on a view's `post`, above its `@extend_schema`. A request without the
header pays one dict lookup. With it:

- The key (1-255 printable ASCII characters, else 400) is claimed atomically for the
  caller: one upsert on the unique `_id` (caller, key) either inserts an `in_progress`
  claim with a lease, or returns the record already there.
- The record's fingerprint is the sha256 of method, path with query, media type and
  canonical body (JSON re-serialized with sorted keys, other bodies as sent). The scope is
  caller + key; the path is in the fingerprint, so the same key on another operation is a
  422 like a different body: a key names one operation, as at Stripe.
- A record with the same fingerprint replays the stored status and body with
  `Idempotent-Replayed: true`; a different fingerprint is a 422
  `idempotency_key_reused`; a claim still within its lease is a 409
  `idempotency_key_in_progress`.
- After the request ran, 2xx and 4xx answers are stored (until 24 h after the first
  request), except 401, 403, 408 and 429, which describe the credentials or the moment
  rather than the request; on those, on 5xx and on a crash the claim is released so a
  retry runs for real.
- A claim whose lease (IDEMPOTENCY_LEASE_SECONDS) ran out belongs to an attempt that
  crashed after its writes but before storing the answer: a retry takes it over and runs
  the request again. Enroll and assign converge on their unique (course, user) index;
  course creation inserts the id `idempotent_object_id` derives from the claim, so the
  retry finds the course the crashed attempt created instead of creating a second one.
"""

import functools
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.response import Response
from rest_framework.settings import api_settings

from asgi_app.schema import ErrorSerializer
from common.errors import DomainError, InvalidInput
from courses import idempotency_repository as records
from courses.repository import now

logger = logging.getLogger(__name__)

HEADER = "HTTP_IDEMPOTENCY_KEY"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
# Answers that describe the credentials or the moment, not the request: never replayed.
_NOT_STORED = frozenset({401, 403, 408, 429})
_HASH_BLOCK = 1 << 20


class InvalidIdempotencyKey(InvalidInput):
    code = "invalid_idempotency_key"
    default_detail = "Idempotency-Key must be 1 to 255 printable ASCII characters."


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"
    default_detail = (
        "This Idempotency-Key was used with a different request (body, path or method); "
        "use a new key for a new request."
    )


class IdempotencyKeyInProgress(DomainError):
    status_code = 409
    code = "idempotency_key_in_progress"
    default_detail = "A request with this Idempotency-Key is still being processed; retry shortly."


@dataclass(frozen=True)
class Claim:
    """This request holds the key and runs."""

    user_id: int
    key: str
    token: str
    created_at: datetime


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    content_type: str


def request_fingerprint(request: Any) -> str:
    """sha256 of method, path with query, media type and canonical body.

    A JSON body within DATA_UPLOAD_MAX_MEMORY_SIZE is canonicalized; any other body (an
    assignment job's CSV of up to 48 MiB) is hashed as sent, block by block from the file
    Django spooled it to, which is then rewound for the view: never held whole in memory.
    """
    django_request = request._request
    media_type = django_request.content_type or ""
    digest = hashlib.sha256()
    for part in (django_request.method, django_request.get_full_path(), media_type):
        digest.update(part.encode("latin-1", "replace") + b"\n")
    is_json = media_type == "application/json" or media_type.endswith("+json")
    length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    stream = django_request._stream
    seekable = getattr(stream, "seekable", None)
    if (is_json and length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE) or not (
        seekable and seekable()
    ):
        body = django_request.body
        if is_json:
            try:
                body = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
            except orjson.JSONDecodeError:
                pass  # not JSON after all: the bytes as sent (the request will be a 400)
        digest.update(body)
    else:
        stream.seek(0)
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
        stream.seek(0)
    return digest.hexdigest()


async def idempotency_claim(*, user_id: int, key: str, fingerprint: str) -> Claim | StoredAnswer:
    """Claim `key` for this caller, or return the answer stored under it.

    Raises IdempotencyKeyReused for another fingerprint and IdempotencyKeyInProgress while
    another attempt holds the lease.
    """
    lease = timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)
    ttl = timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    for _ in range(3):
        moment = now()
        claim = records.NewClaim(
            token=uuid.uuid4().hex,
            fingerprint=fingerprint,
            created_at=moment,
            lease_expires_at=moment + lease,
            expires_at=moment + ttl,
        )
        record = await records.idempotency_record_claim(user_id=user_id, key=key, claim=claim)
        if record is None:
            return Claim(user_id, key, claim.token, moment)
        if record.expires_at <= moment:
            pass  # past its 24 h, not yet deleted by the TTL monitor: the key is free again
        elif record.fingerprint != fingerprint:
            raise IdempotencyKeyReused
        elif record.state == records.DONE:
            return StoredAnswer(record.status, record.body, record.content_type)
        elif record.lease_expires_at > moment:
            raise IdempotencyKeyInProgress
        else:
            # The first attempt's lease ran out: it crashed (or outlived its lease). Run
            # again under the same created_at, so idempotent_object_id stays the same.
            logger.warning("idempotency key lease expired, running the request again")
            claim = replace(claim, created_at=record.created_at, expires_at=record.created_at + ttl)
        if await records.idempotency_record_take_over(
            user_id=user_id, key=key, expected_token=record.token, claim=claim
        ):
            return Claim(user_id, key, claim.token, claim.created_at)
        # Another retry took it over first: look again.
    raise IdempotencyKeyInProgress


async def idempotency_complete(*, claim: Claim, status: int, body: bytes, content_type: str):
    """Store the answer, or release the claim when the answer must not be replayed."""
    if 200 <= status < 500 and status not in _NOT_STORED:
        stored = await records.idempotency_record_complete(
            user_id=claim.user_id,
            key=claim.key,
            token=claim.token,
            status=status,
            body=body,
            content_type=content_type,
        )
        if not stored:
            logger.warning("idempotency claim was taken over before its answer was stored")
        return
    await idempotency_release(claim=claim)


async def idempotency_release(*, claim: Claim) -> None:
    await records.idempotency_record_release(
        user_id=claim.user_id, key=claim.key, token=claim.token
    )


def idempotent_object_id(request: Any) -> str | None:
    """A MongoDB object id (24 hex digits) for what this request creates, the same for every
    attempt of one claim: the first attempt's time, then 8 bytes of a hash of the caller, the
    key and that time. None without an Idempotency-Key (let the repository choose)."""
    claim = getattr(request, "idempotency_claim", None)
    if claim is None:
        return None
    seed = f"{claim.user_id}\n{claim.key}\n{claim.created_at.isoformat()}".encode()
    return f"{int(claim.created_at.timestamp()):08x}{hashlib.sha256(seed).hexdigest()[:16]}"


def _replay(answer: StoredAnswer) -> Response:
    response = Response(status=answer.status, headers={REPLAYED_HEADER: "true"})
    response.content = answer.body  # marks it rendered: the stored bytes go out unchanged
    response["Content-Type"] = answer.content_type
    return response


async def _run_once(handler, view, request, key: str, args, kwargs) -> Response:
    if not _VALID_KEY.fullmatch(key):
        raise InvalidIdempotencyKey
    outcome = await idempotency_claim(
        user_id=request.user.id, key=key, fingerprint=request_fingerprint(request)
    )
    if isinstance(outcome, StoredAnswer):
        return _replay(outcome)
    request.idempotency_claim = outcome
    try:
        try:
            response = await handler(view, request, *args, **kwargs)
        except Exception as exc:
            response = view.handle_exception(exc)  # re-raises what becomes a 500
        # Render now, to store the exact bytes; the dispatcher does not render twice.
        response = view.finalize_response(request, response, *args, **kwargs)
        if hasattr(response, "render"):  # a DRF Response; a JsonAnswer is rendered already
            response.render()
    except BaseException:
        try:
            await idempotency_release(claim=outcome)
        except DomainError:
            logger.warning("could not release an idempotency claim; its lease will expire")
        raise
    try:
        await idempotency_complete(
            claim=outcome,
            status=response.status_code,
            body=response.content,
            content_type=response.get("Content-Type", "application/json"),
        )
    except DomainError:
        # The work is done: answer it. A retry re-runs it once the lease expires.
        logger.warning("could not store an idempotent answer; its lease will expire")
    return response


def _with(responses: Any, extra: dict[int, OpenApiResponse]) -> Any:
    """The operation's documented responses plus `extra`; a status documented for another
    reason too (a 400 of the body, a 409 of the course) gets both descriptions."""
    if not isinstance(responses, dict):
        return responses
    merged = dict(responses)
    for code, response in extra.items():
        existing = merged.get(code)
        if existing is None:
            merged[code] = response
        elif isinstance(existing, OpenApiResponse):
            merged[code] = OpenApiResponse(
                existing.response, description=f"{existing.description} Or: {response.description}"
            )
    return merged


PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "1-255 printable ASCII characters. The first request with a key is processed and "
        "its answer stored for 24 hours per caller; a retry with the same key and body gets "
        "that answer again with `Idempotent-Replayed: true`."
    ),
)
RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Malformed `Idempotency-Key` header."),
    409: OpenApiResponse(
        ErrorSerializer,
        description="`idempotency_key_in_progress`: the first request with this key is "
        "still running.",
    ),
    422: OpenApiResponse(
        ErrorSerializer,
        description="`idempotency_key_reused`: this key was used with a different request.",
    ),
}


def _schema_class(base: type) -> type:
    class IdempotentSchema(base):
        def get_override_parameters(self):
            return [*super().get_override_parameters(), PARAMETER]

        def get_response_serializers(self):
            return _with(super().get_response_serializers(), RESPONSES)

    return IdempotentSchema


def idempotent(handler):
    """Make a view's POST handler honour `Idempotency-Key` (place above `@extend_schema`)."""

    @functools.wraps(handler)
    async def wrapper(view, request, *args, **kwargs):
        key = request._request.META.get(HEADER)
        if key is None:
            return await handler(view, request, *args, **kwargs)
        return await _run_once(handler, view, request, key, args, kwargs)

    base = getattr(handler, "kwargs", {}).get("schema") or api_settings.DEFAULT_SCHEMA_CLASS
    wrapper.kwargs = {**getattr(handler, "kwargs", {}), "schema": _schema_class(base)}
    return wrapper
