"""Account reads."""

from django.db.models import Q

from accounts.models import User


async def user_get_active(*, user_id: int) -> User | None:
    return await User.objects.filter(pk=user_id, is_active=True).afirst()


async def user_list(*, search: str, limit: int, offset: int) -> tuple[int, list[User]]:
    queryset = User.objects.order_by("id")
    if search:
        queryset = queryset.filter(
            Q(username__icontains=search) | Q(email__icontains=search) | Q(phone__icontains=search)
        )
    count = await queryset.acount()
    users = [user async for user in queryset[offset : offset + limit]]
    return count, users


async def users_by_ids(*, ids: list[int]) -> list[tuple[int, str, bool]]:
    """(id, username, is_active) for the ids that exist; one query."""
    rows = User.objects.filter(pk__in=ids).values_list("id", "username", "is_active")
    return [row async for row in rows]
