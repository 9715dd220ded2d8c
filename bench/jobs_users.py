"""Users for assignment-job tests and benchmarks, fast: `bulk_create` with unusable
passwords in batches (the model's bulk_create fills `username_key`), never registrations.
A million take about a minute on SQLite."""

from __future__ import annotations

BATCH = 5000


def create_users(n: int, *, prefix: str, active: bool = True) -> list[int]:
    """Create `n` users named `<prefix><i>`; returns their ids in creation order."""
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from accounts.models import User

    unusable = make_password(None)
    with transaction.atomic():
        for start in range(0, n, BATCH):
            User.objects.bulk_create(
                [
                    User(
                        username=f"{prefix}{i}",
                        email=f"{prefix}{i}@example.com",
                        password=unusable,
                        is_active=active,
                    )
                    for i in range(start, min(n, start + BATCH))
                ],
                batch_size=BATCH,
            )
    return list(
        User.objects.filter(username__startswith=prefix).order_by("id").values_list("id", flat=True)
    )
