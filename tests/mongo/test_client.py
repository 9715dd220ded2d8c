import inspect
import socket
import time

import pytest

from mongo.client import get_db, reset_client
from mongo.indexes import INDEXES, ensure_indexes
from tests.conftest import timed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def mongo_down(settings):
    """Point the service at a port where nothing listens, with short timeouts."""
    saved = settings.MONGODB_URI
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{_free_port()}/?directConnection=true"
    settings.MONGODB_SERVER_SELECTION_TIMEOUT_MS = 300
    settings.MONGODB_CONNECT_TIMEOUT_MS = 300
    await reset_client()
    yield
    settings.MONGODB_URI = saved  # before other fixtures' teardown drops their database
    await reset_client()


async def test_indexes_are_created_idempotently(mongo_db):
    first = await ensure_indexes(mongo_db)
    second = await ensure_indexes(mongo_db)
    assert sorted(first) == sorted(second)
    cursor = mongo_db.enrollments.list_indexes()
    if inspect.isawaitable(cursor):  # PyMongo's async API awaits it; Motor returns it directly
        cursor = await cursor
    names = {i["name"] async for i in cursor}
    assert {"course_user_unique", "user_enrolled_at"} <= names
    unique = [i for i in INDEXES if i.options.get("unique")]
    assert unique
    assert unique[0].keys == [("course_id", 1), ("user_id", 1)]


async def test_the_driver_is_the_configured_one(mongo_db, settings):
    name = type(get_db().client).__module__
    assert ("motor" in name) == (settings.MONGO_DRIVER == "motor")


@timed
async def test_mongodb_down_gives_503_quickly_not_a_hang(api, regular, mongo_down, timed):
    start = time.perf_counter()
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["mongodb"]
    courses = await api.get("/api/courses/", headers=regular[1])
    assert courses.status_code == 503
    assert courses.json()["detail"]
    assert courses.headers["Retry-After"]
    enroll = await api.post(f"/api/courses/{'a' * 24}/enroll/", headers=regular[1])
    assert enroll.status_code == 503
    assert not timed or time.perf_counter() - start < 5
    # Login needs only SQL and keeps working.
    login = await api.post(
        "/api/auth/login/", json={"username": "alice", "password": "correct-horse-battery"}
    )
    assert login.status_code == 200
