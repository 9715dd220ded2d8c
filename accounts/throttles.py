"""Rate limits for login, registration and token refresh: per client IP and per account.

The counters live in the default cache (Redis when REDIS_URL is set). The API views run
these throttles through `ApiView.throttle`, IP throttles first, so a request whose body
cannot be parsed has been counted per IP before the parse error answers it. The Django
admin's and the web console's login forms (accounts/forms.py) run the API login's throttles
through `login_throttle_wait`: one set of counters per username and per IP, whichever door
the guesses come through.
"""

import hashlib
import logging

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import username_key
from accounts.tokens import refresh_token_user_id
from asgi_app.views import THROTTLE_STORE_ERRORS

logger = logging.getLogger(__name__)


class _ConfigurableThrottle(SimpleRateThrottle):
    def allow_request(self, request, view) -> bool:
        if settings.THROTTLE_DISABLED:
            return True
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        # Read at request time so that settings changes (tests, env) apply.
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].get(self.scope)

    def __init__(self) -> None:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)


class _PerIPThrottle(_ConfigurableThrottle):
    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginIPThrottle(_PerIPThrottle):
    scope = "login_ip"


class RegisterIPThrottle(_PerIPThrottle):
    scope = "register_ip"


class RefreshIPThrottle(_PerIPThrottle):
    scope = "refresh_ip"


class _PerAccountThrottle(_ConfigurableThrottle):
    def key_for(self, ident: str | None) -> str | None:
        if not ident:
            return None  # nothing recognizable to count: the per-IP throttle still counts
        digest = hashlib.sha256(ident.encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}


def _body_string(request, name: str) -> str | None:
    """A string field of the JSON body. A malformed body raises DRF's ParseError here."""
    data = request.data
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class LoginUsernameThrottle(_PerAccountThrottle):
    """Slows password guessing against one account from many addresses.

    Keyed on `username_key`, the form login looks the user up by: every spelling of one
    account (case, width, surrounding whitespace) is one counter.
    """

    scope = "login_username"

    def username(self, request) -> str | None:
        return _body_string(request, "username")

    def get_cache_key(self, request, view) -> str | None:
        username = self.username(request)
        return self.key_for(username_key(username) if username is not None else None)


class RefreshUserThrottle(_PerAccountThrottle):
    """Bounds token rotation per account (each one writes two SQL rows kept for days).

    Keyed on the user id of a correctly signed refresh token, so a forged token cannot
    spend a victim's budget; anything else is counted per IP only.
    """

    scope = "refresh_user"

    def get_cache_key(self, request, view) -> str | None:
        raw = _body_string(request, "refresh")
        user_id = refresh_token_user_id(raw) if raw else None
        return self.key_for(str(user_id) if user_id else None)


class _GivenUsernameThrottle(LoginUsernameThrottle):
    def __init__(self, username: str | None) -> None:
        super().__init__()
        self.given = username

    def username(self, request) -> str | None:
        return self.given


def login_throttle_wait(request: HttpRequest, username: str | None) -> float | None:
    """Count a login attempt made outside DRF (the admin's, the console's) against the API login's
    per-IP and per-username counters. Returns the seconds to wait when either is spent,
    None when the attempt may go ahead. Fails open, logged, when the counters are
    unreachable, like the API's throttles."""
    throttles = [LoginIPThrottle(), _GivenUsernameThrottle(username)]
    try:
        waits = [t.wait() or 1.0 for t in throttles if not t.allow_request(request, None)]
    except THROTTLE_STORE_ERRORS as exc:
        logger.warning("throttle counters unavailable, not throttling: %s", exc)
        return None
    return max(waits) if waits else None
