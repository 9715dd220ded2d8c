"""Stateless JWT authentication: the token's claims are trusted, no SQL per request.

Tokens carry `user_id`, `username`, `is_staff` and `is_superuser` (see accounts.tokens).
Admin endpoints additionally confirm in SQL that the user is still active and an admin
(accounts.permissions.IsAdmin); regular endpoints accept a signed, unexpired access token
for up to its lifetime (15 minutes by default) after a user is deactivated.
"""

import threading
import time
from functools import cached_property

from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.tokens import Token

from accounts.tokens import user_id_claim


class ClaimsUser(TokenUser):
    """The user as the token describes it; `id` is the integer the rest of the code uses."""

    @cached_property
    def id(self) -> int:
        return user_id_claim(self.token["user_id"])


# Access tokens this process has verified, by their exact bytes. A client sends the same
# token with every request for its whole lifetime, and verifying it (base64 and JSON
# decoding, HMAC, claim checks) is the largest cost of authentication. Same bytes, same key:
# same verdict, so a hit skips straight to the expiry check. Bounded, oldest out first.
# Authentication also runs on request threads (sync views such as the schema), so changes
# take the lock: unlocked, two threads evicting the same oldest entry raised KeyError.
_verified: dict[bytes, Token] = {}
_verified_lock = threading.Lock()
VERIFIED_TOKENS_MAX = 10_000


def _remember(raw_token: bytes, token: Token) -> None:
    with _verified_lock:
        _verified[raw_token] = token
        while len(_verified) > VERIFIED_TOKENS_MAX:
            del _verified[next(iter(_verified))]


def _forget(raw_token: bytes) -> None:
    with _verified_lock:
        _verified.pop(raw_token, None)


class TokenClaimsAuthentication(JWTStatelessUserAuthentication):
    www_authenticate_realm = "api"

    def get_validated_token(self, raw_token: bytes) -> Token:
        token = _verified.get(raw_token)
        if token is not None:
            if token["exp"] > time.time():
                return token
            _forget(raw_token)
        token = super().get_validated_token(raw_token)
        _remember(raw_token, token)
        return token

    def get_user(self, validated_token):
        if user_id_claim(validated_token.get("user_id")) is None:
            raise InvalidToken("Token contained no recognizable user identification")
        return ClaimsUser(validated_token)
