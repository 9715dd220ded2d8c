"""Usernames are one account per NFKC + case-folded form, in the database and at the door."""

import importlib

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from accounts.models import User, username_key

PASSWORD = "correct-horse-battery"
REGISTER = "/api/auth/register/"
LOGIN = "/api/auth/login/"
TAKEN = "A user with that username already exists."
CYRILLIC_A = "\u0430"


def wide(text: str) -> str:
    """The full-width spelling (U+FF01..U+FF5E) of an ASCII word."""
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


def test_username_key_folds_case_width_and_surrounding_space():
    assert username_key("Alice") == username_key(wide("ALICE")) == "alice"
    assert username_key("\u3000alice\u2000") == username_key("alice\t") == "alice"
    assert username_key("Straße") == "strasse"
    assert (
        username_key(CYRILLIC_A + "dmin") != "admin"
    )  # NFKC does not map confusables: see ASCII rule


@pytest.mark.parametrize(
    ("username", "error"),
    [
        ("ADMIN", TAKEN),
        ("Admin", TAKEN),
        (wide("admin"), TAKEN),  # full-width: NFKC makes it "admin"
        (" admin\u3000", TAKEN),
        ("Alice", TAKEN),
        (CYRILLIC_A + "dmin", "Enter a valid username."),  # Cyrillic a: not ASCII
        ("ålice", "Enter a valid username."),
    ],
)
async def test_look_alike_usernames_cannot_register(api, make_user, username, error):
    await make_user(username="admin")
    await make_user(username="alice")
    body = {"username": username, "email": "new@example.com", "password": PASSWORD}
    response = await api.post(REGISTER, json=body)
    assert response.status_code == 400
    assert response.json()["username"][0].startswith(error)
    assert await User.objects.acount() == 2


async def test_registration_stores_the_nfkc_form(api):
    body = {"username": wide("Bob"), "email": "bob@example.com", "password": PASSWORD}
    response = await api.post(REGISTER, json=body)
    assert response.status_code == 201
    assert response.json()["user"]["username"] == "Bob"
    assert (await User.objects.aget()).username_key == "bob"


@pytest.mark.parametrize(
    "spelling", ["Carol", "carol", "CAROL", wide("carol"), "\u3000Carol\u2000"]
)
async def test_login_accepts_the_users_own_spelling(api, make_user, spelling):
    user = await make_user(username="Carol")
    response = await api.post(LOGIN, json={"username": spelling, "password": PASSWORD})
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    me = await api.get(
        "/api/auth/me/", headers={"Authorization": f"Bearer {response.json()['access']}"}
    )
    assert me.json()["id"] == user.id


def _create(username: str) -> None:
    User.objects.create(username=username, email=f"{uuid_like(username)}@example.com")


def uuid_like(text: str) -> str:
    return text.encode().hex()


@pytest.mark.parametrize("write", ["create", "bulk_create", "update"])
def test_the_database_refuses_a_look_alike(transactional_db, write):
    """The constraint holds whatever path writes the row (a race, a script, the shell)."""
    _create("Dora")
    other = User.objects.create(username="eve", email="eve@example.com")
    writes = {
        "create": lambda: _create("dORA"),
        "bulk_create": lambda: User.objects.bulk_create([User(username="DORA", email="d@x.com")]),
        "update": lambda: User.objects.filter(pk=other.pk).update(username="dora"),
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        writes[write]()
    assert sorted(User.objects.values_list("username", flat=True)) == ["Dora", "eve"]


def test_model_validation_names_the_clash(transactional_db):
    """What the Django admin's forms run: a field error, not an IntegrityError (a 500)."""
    _create("Frank")
    with pytest.raises(ValidationError) as raised:
        User(username="FRANK", email="f2@example.com", password="x").full_clean()
    assert raised.value.message_dict["username"] == [TAKEN]


def test_migration_refuses_existing_look_alikes_and_changes_nothing(transactional_db):
    migration = importlib.import_module("accounts.migrations.0002_username_key")
    before, after = [("accounts", "0001_initial")], [("accounts", "0002_username_key")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_user = executor.loader.project_state(before).apps.get_model("accounts", "User")
        old_user.objects.create(username="grace", email="g1@example.com")
        clash = old_user.objects.create(username="GRACE", email="g2@example.com")
        executor.loader.build_graph()
        with pytest.raises(migration.DuplicateUsernames, match=r"'grace': id \d+ 'grace', id"):
            executor.migrate(after)
        columns = {
            c.name
            for c in connection.introspection.get_table_description(
                connection.cursor(), "accounts_user"
            )
        }
        assert "username_key" not in columns  # rolled back as a whole
        clash.delete()
    finally:
        executor.loader.build_graph()
        executor.migrate(after)
    assert User.objects.get().username_key == "grace"


async def test_throttle_counts_every_spelling_of_one_username(api, make_user, throttle_rates):
    """Found by an attacker: trimmed or re-spelled names each had a fresh counter."""
    throttle_rates(login_username="3/min")
    await make_user(username="alice")
    for _ in range(3):
        response = await api.post(LOGIN, json={"username": "alice", "password": "wrong"})
        assert response.status_code == 401
    for spelling in [
        "alice",
        "alice ",
        "alice\t",
        "\u3000alice",
        "ALICE",
        wide("alice"),
        "\u3000alice\u2000",
        "\u00a0Alice\n",
    ]:
        response = await api.post(LOGIN, json={"username": spelling, "password": PASSWORD})
        assert response.status_code == 429, spelling
        assert "access" not in response.json()
