"""Account reads."""

from django.db.models import Q
from django.db.models.functions import Lower

from accounts.models import User, username_key


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


async def users_by_usernames(*, usernames: list[str]) -> list[tuple[str, int, str, bool]]:
    """(username_key, id, username, is_active) of the users these usernames name, compared
    as login compares them (`username_key`: NFKC, case-folded, trimmed); one query on the
    unique `username_key` index."""
    keys = list({username_key(name) for name in usernames})
    rows = User.objects.filter(username_key__in=keys).values_list(
        "username_key", "id", "username", "is_active"
    )
    return [row async for row in rows]


async def users_by_emails(*, emails: list[str]) -> list[tuple[str, int, str, bool]]:
    """(lower-cased email, id, username, is_active) of the users these emails name,
    case-insensitively as registration treats them; one query on the unique `lower(email)`
    index."""
    keys = list({email_key(email) for email in emails})
    rows = (
        User.objects.annotate(email_key=Lower("email"))
        .filter(email_key__in=keys)
        .values_list("email_key", "id", "username", "is_active")
    )
    return [row async for row in rows]


def email_key(email: str) -> str:
    """The form in which two emails are the same account: trimmed, lower-cased (the unique
    constraint is on `lower(email)`)."""
    return email.strip().lower()
