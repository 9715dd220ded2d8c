"""Issuing and rotating JWT pairs. Sync functions: call them through sync_to_async."""

import re

from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User

MAX_USER_ID = 2**63 - 1  # the largest id a SQL bigint primary key holds
_ASCII_ID = re.compile(r"[0-9]{1,19}")


class InvalidRefreshToken(Exception):
    pass


def user_id_claim(claim: object) -> int | None:
    """A token's `user_id` claim as an id a user row can have, or None.

    Correctly signed tokens are still input: `"\u00b2".isdigit()` is true and `int()`
    accepts other scripts' digits, and 2**70 overflows a SQL bigint (both were a 500).
    An integer, or a string of ASCII digits, within 1..2**63-1.
    """
    if isinstance(claim, str) and _ASCII_ID.fullmatch(claim):
        claim = int(claim)
    if type(claim) is not int or not 1 <= claim <= MAX_USER_ID:
        return None
    return claim


def refresh_token_user_id(raw: str) -> int | None:
    """The user id of a correctly signed, unexpired refresh token; no database access.

    Cheap enough for a throttle, and a forged token yields None, so nobody can spend
    another user's refresh budget.
    """
    try:
        claims = token_backend.decode(raw)
    except TokenBackendError:
        return None
    if claims.get("token_type") != "refresh":
        return None
    return user_id_claim(claims.get("user_id"))


def tokens_for_user(user: User) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)  # records an OutstandingToken row
    # Claims that let hot paths trust the token without a SQL query; access tokens
    # copy them from the refresh token.
    refresh["user_id"] = user.id  # an integer (simplejwt would write a string)
    refresh["username"] = user.username
    refresh["is_staff"] = user.is_staff
    refresh["is_superuser"] = user.is_superuser
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _consume(raw: str) -> RefreshToken:
    """Verify a refresh token and blacklist it; exactly one concurrent caller succeeds."""
    try:
        token = RefreshToken(raw)  # signature, expiry, type and blacklist checks
    except TokenError as exc:
        raise InvalidRefreshToken(str(exc)) from exc
    try:
        outstanding = OutstandingToken.objects.get(jti=token["jti"])
        with transaction.atomic():
            _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    except (OutstandingToken.DoesNotExist, IntegrityError):
        created = False
    if not created:
        raise InvalidRefreshToken("Token is blacklisted")
    return token


def tokens_rotate(raw: str) -> dict[str, str]:
    token = _consume(raw)
    # Fresh claims from the database, so a demoted or deactivated user cannot refresh
    # their way back to stale privileges.
    user_id = user_id_claim(token.get("user_id"))
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None:
        raise InvalidRefreshToken("User is inactive or no longer exists")
    return tokens_for_user(user)


def token_revoke(raw: str) -> None:
    _consume(raw)
