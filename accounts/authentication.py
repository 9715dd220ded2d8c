"""Stateless JWT authentication: the token's claims are trusted, no SQL per request.

Tokens carry `user_id`, `username`, `is_staff` and `is_superuser` (see accounts.tokens).
Admin endpoints additionally confirm in SQL that the user is still active and an admin
(accounts.permissions.IsAdmin); regular endpoints accept a signed, unexpired access token
for up to its lifetime (15 minutes by default) after a user is deactivated.
"""

from functools import cached_property

from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.models import TokenUser


class ClaimsUser(TokenUser):
    """The user as the token describes it; `id` is the integer the rest of the code uses."""

    @cached_property
    def id(self) -> int:
        return int(self.token["user_id"])


class TokenClaimsAuthentication(JWTStatelessUserAuthentication):
    www_authenticate_realm = "api"

    def get_user(self, validated_token):
        claim = validated_token.get("user_id")
        if isinstance(claim, bool) or not isinstance(claim, int | str) or not str(claim).isdigit():
            raise InvalidToken("Token contained no recognizable user identification")
        return ClaimsUser(validated_token)
