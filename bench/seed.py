"""`python -m bench.seed`: create the benchmark's users in SQL and mint their tokens.

Runs in its own process against the temporary SQLite database (Django settings come from
the environment the runner prepares). Writes JSON to `--out`:
`{"admin": {"id", "access"}, "users": [{"id", "username", "access"}, ...], "all_ids": [...],
"extra_ids": [...]}` where `users` are the first `--tokens` of `--users` regular users and
`extra_ids` the `--extra-users` members of the big course (bench.bigcourse), in id order.
With `--sessions N`, the first N of those users also get `"session"`: the key of a live
console session (what signing in to /console/ stores), for bench.sessions.
With `--fresh N`, the first N of those users also get `"fresh"`: `--fresh-per-user` more
access tokens each, every one distinct (its own `jti`), with the same claims a login
returns, so the reference comparison can send each first-time enroll with a token the
server has never seen.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def console_session(user) -> str:
    """A signed-in session for `user`, as the console's login stores it; its key."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def seed(
    users: int,
    tokens: int,
    extra: int = 0,
    fresh: int = 0,
    fresh_per_user: int = 0,
    sessions: int = 0,
) -> dict:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User
    from accounts.tokens import tokens_for_user

    unusable = make_password(None)  # nobody logs in as a benchmark user
    with transaction.atomic():
        admin = User.objects.create_superuser("bench-admin", "bench-admin@example.com", None)
        User.objects.bulk_create(
            [
                User(username=f"bench{i}", email=f"bench{i}@example.com", password=unusable)
                for i in range(users)
            ],
            batch_size=1000,
        )
        regular = list(User.objects.filter(username__startswith="bench").exclude(pk=admin.pk))
        # Members of the big course (bench.bigcourse): no tokens, only ids.
        for start in range(0, extra, 50_000):
            User.objects.bulk_create(
                [
                    User(username=f"member{i}", email=f"member{i}@example.com", password=unusable)
                    for i in range(start, min(start + 50_000, extra))
                ],
                batch_size=1000,
            )
        extra_ids = list(
            User.objects.filter(username__startswith="member")
            .order_by("id")
            .values_list("id", flat=True)
        )
        minted = []
        for n, user in enumerate(regular[:tokens]):
            pair = tokens_for_user(user)
            row = {"id": user.id, "username": user.username, "access": pair["access"]}
            if n < sessions:
                row["session"] = console_session(user)
            if n < fresh:
                refresh = RefreshToken(pair["refresh"])  # access tokens copy its claims
                row["fresh"] = [str(refresh.access_token) for _ in range(fresh_per_user)]
            minted.append(row)
        admin_access = tokens_for_user(admin)["access"]
    return {
        "admin": {"id": admin.id, "access": admin_access},
        "users": minted,
        "all_ids": [user.id for user in regular],
        "extra_ids": extra_ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--extra-users", type=int, default=0)
    parser.add_argument("--fresh", type=int, default=0)
    parser.add_argument("--fresh-per-user", type=int, default=0)
    parser.add_argument("--sessions", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_app.settings")
    import django

    django.setup()
    args.out.write_text(
        json.dumps(
            seed(
                args.users,
                args.tokens,
                args.extra_users,
                args.fresh,
                args.fresh_per_user,
                args.sessions,
            )
        )
    )


if __name__ == "__main__":
    main()
