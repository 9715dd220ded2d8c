"""Usernames unique after NFKC and case folding; new usernames ASCII only.

Adds `username_key` (see `accounts.models.username_key`), fills it for every existing
user, then makes it unique. If two existing users already collide under the new rule
(`alice` and `Alice`, or `admin` and the full-width `ａｄｍｉｎ`) the migration stops,
names them, and changes nothing: rename or remove one of each group, then migrate again.
"""

import django.contrib.auth.validators
from django.db import migrations, models

import accounts.models


class DuplicateUsernames(Exception):
    pass


def fill_username_keys(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    db = schema_editor.connection.alias
    seen: dict[str, list[tuple[int, str]]] = {}
    users = User.objects.using(db).only("id", "username").order_by("id")
    for user in users.iterator(chunk_size=2000):
        key = accounts.models.username_key(user.username)
        seen.setdefault(key, []).append((user.id, user.username))
        User.objects.using(db).filter(pk=user.pk).update(username_key=key)
    clashes = {key: group for key, group in seen.items() if len(group) > 1}
    if clashes:
        lines = [
            f"  {key!r}: " + ", ".join(f"id {uid} {name!r}" for uid, name in group)
            for key, group in sorted(clashes.items())
        ]
        raise DuplicateUsernames(
            "These users' usernames are the same after NFKC normalization and case folding; "
            "rename or remove all but one of each group, then run migrate again "
            "(nothing was changed):\n" + "\n".join(lines)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AlterModelManagers(
            name="user",
            managers=[("objects", accounts.models.AccountManager())],
        ),
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.TextField(editable=False, null=True),
        ),
        migrations.RunPython(fill_username_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_key",
            field=models.TextField(editable=False),
        ),
        migrations.AlterField(
            model_name="user",
            name="username",
            field=models.CharField(
                error_messages={"unique": "A user with that username already exists."},
                help_text="Required. 150 characters or fewer. ASCII letters, digits and "
                "@/./+/-/_ only.",
                max_length=150,
                unique=True,
                validators=[django.contrib.auth.validators.ASCIIUsernameValidator()],
                verbose_name="username",
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                fields=["username_key"], name="user_username_key_unique"
            ),
        ),
    ]
