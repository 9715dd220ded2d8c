from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from accounts.models import User
from asgi_app.lifespan import LifespanApp
from mongo import client as mongo_client


async def _call(*args, **kwargs) -> str:
    out = StringIO()
    # Commands run their own event loop, so they go to a worker thread.
    await sync_to_async(call_command, thread_sensitive=False)(*args, stdout=out, **kwargs)
    return out.getvalue()


async def test_lifespan_creates_indexes_at_startup_and_closes_the_client(mongo_db):
    await mongo_db.client.drop_database(mongo_db.name)
    sent = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    async def never_called(scope, receive, send):
        raise AssertionError("lifespan must not reach Django")

    await LifespanApp(never_called)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert mongo_client._client is None  # closed at shutdown
    names = {index["name"] async for index in await _list_indexes(mongo_db)}
    assert "course_user_unique" in names


async def _list_indexes(db):
    db = mongo_client.get_db()
    cursor = db.enrollments.list_indexes()
    return await cursor if hasattr(cursor, "__await__") else cursor


async def test_ensure_indexes_command_is_idempotent(mongo_db):
    first = await _call("ensure_indexes")
    second = await _call("ensure_indexes")
    assert "course_user_unique" in first
    assert first == second


async def test_seed_demo_is_idempotent(transactional_db, mongo_db):
    out = await _call("seed_demo")
    assert "Demo admin created: username 'admin', password '" in out
    courses = await mongo_db.courses.count_documents({})
    users = await User.objects.acount()
    assert courses == 5
    again = await _call("seed_demo")
    assert "Demo admin created" not in again  # the password is shown once
    assert await mongo_db.courses.count_documents({}) == courses
    assert await User.objects.acount() == users
    assert "not needed" in await _call("seed_demo", "--if-empty")
    admin = await User.objects.aget(username="admin")
    assert admin.is_superuser
    assert admin.is_staff


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_noinput(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-admin-password")
    call_command(
        "createsuperuser", "--noinput", username="root", email="root@example.com", stdout=StringIO()
    )
    user = User.objects.get(username="root")
    assert user.is_superuser
    assert user.check_password("a-long-admin-password")


@pytest.mark.django_db(transaction=True)
def test_user_admin_is_registered_with_search(admin_client):
    from django.contrib import admin

    model_admin = admin.site._registry[User]
    assert set(model_admin.search_fields) == {"username", "email", "phone"}
    response = admin_client.get("/admin/accounts/user/?q=admin")
    assert response.status_code == 200
