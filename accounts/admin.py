from math import ceil

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.throttles import login_throttle_wait


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login, held to the API login's per-IP and per-username limits.

    Counted before the password is checked, so a spent budget refuses even the right
    password; the page answers 200 with this error above the form (the admin's way of
    refusing a login), and the API login shares the same counters.
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many login attempts. Try again in %(wait)d seconds.",
    }

    def clean(self):
        wait = login_throttle_wait(self.request, self.cleaned_data.get("username"))
        if wait is not None:
            raise ValidationError(
                self.error_messages["throttled"], code="throttled", params={"wait": ceil(wait)}
            )
        return super().clean()


admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("id", "username", "email", "phone", "is_staff", "is_superuser", "is_active")
    search_fields = ("username", "email", "phone")
    ordering = ("id",)
    fieldsets = (*BaseUserAdmin.fieldsets, ("Contact", {"fields": ("phone",)}))
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "phone", "password1", "password2"),
            },
        ),
    )
