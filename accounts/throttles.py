"""Rate limits for login and registration (scoped, per client IP and per username)."""

import hashlib

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import username_key


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


class LoginUsernameThrottle(_ConfigurableThrottle):
    """Slows password guessing against one account from many addresses."""

    scope = "login_username"

    def get_cache_key(self, request, view) -> str | None:
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username")
        if not isinstance(username, str) or not username_key(username):
            return None  # the serializer rejects it; nothing to count
        # The form login looks the user up by: every spelling of one account is one counter.
        digest = hashlib.sha256(username_key(username).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}
