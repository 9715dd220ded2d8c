"""Session login forms (the Django admin's and the web console's), held to the API login's
per-IP and per-username limits."""

from math import ceil

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts.throttles import login_throttle_wait

THROTTLED = "Too many login attempts. Try again in %(wait)d seconds."


class ThrottledLoginMixin:
    """Counted before the password is checked, so a spent budget refuses even the right
    password; the page answers with this error above the form, and the API login shares
    the same counters: guesses cannot alternate between the doors."""

    def clean(self):
        wait = login_throttle_wait(self.request, self.cleaned_data.get("username"))
        if wait is not None:
            raise ValidationError(THROTTLED, code="throttled", params={"wait": ceil(wait)})
        return super().clean()


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The Django admin's login (staff only)."""


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The web console's login (any active user)."""
