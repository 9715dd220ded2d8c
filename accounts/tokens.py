"""Issuing and rotating JWT pairs. Sync functions: call them through sync_to_async."""

from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User


class InvalidRefreshToken(Exception):
    pass


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
    user = User.objects.filter(pk=token.get("user_id"), is_active=True).first()
    if user is None:
        raise InvalidRefreshToken("User is inactive or no longer exists")
    return tokens_for_user(user)


def token_revoke(raw: str) -> None:
    _consume(raw)
