"""Stateless JWT authentication: the token's claims are trusted, no SQL per request.

Tokens carry `user_id`, `username`, `is_staff` and `is_superuser` (see accounts.tokens).
Admin endpoints additionally confirm in SQL that the user is still active and an admin
(accounts.permissions.IsAdmin); regular endpoints accept a signed, unexpired access token
for up to its lifetime (15 minutes by default) after a user is deactivated.
"""

from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication


class TokenClaimsAuthentication(JWTStatelessUserAuthentication):
    www_authenticate_realm = "api"
