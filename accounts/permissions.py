from rest_framework.permissions import BasePermission

from accounts.models import User


class IsAdmin(BasePermission):
    """Admins are users with is_staff or is_superuser.

    `has_permission` rejects non-admins from the token's claims without any I/O; `confirm`
    (awaited by asgi_app.views.ApiView) re-checks in SQL that the account is still active
    and still an admin, since a token outlives a demotion by up to its lifetime.
    """

    message = "Admin privileges are required."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and (getattr(user, "is_staff", False) or user.is_superuser))

    async def confirm(self, request, view) -> bool:
        row = await (
            User.objects.filter(pk=request.user.id, is_active=True)
            .values_list("is_staff", "is_superuser")
            .afirst()
        )
        return row is not None and any(row)
