import inspect
import time

import pytest

from devstack.stack import free_port
from mongo.client import get_db, reset_client
from mongo.indexes import INDEXES, ensure_indexes
from tests.conftest import timed


@pytest.fixture
async def mongo_down(settings):
    """Point the service at a port where nothing listens, with short timeouts."""
    saved = settings.MONGODB_URI
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
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


async def test_enrollment_index_present_reports_the_unique_index(mongo_db):
    from mongo.indexes import enrollment_index_present

    assert await enrollment_index_present()
    await mongo_db.enrollments.drop_index("course_user_unique")
    assert not await enrollment_index_present()


async def test_a_due_recheck_recreates_a_lost_index_before_the_write(
    api, regular, create_course, mongo_db, invariants, monkeypatch
):
    from mongo import indexes

    course = await create_course()
    await mongo_db.enrollments.drop_index("course_user_unique")  # lost behind the service
    monkeypatch.setattr(indexes, "INDEXES_RECHECK_SECONDS", 0.0)
    response = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert response.status_code == 201
    assert await indexes.enrollment_index_present()
    assert await invariants(course["id"]) == 1


async def test_a_server_change_forgets_the_ensured_indexes(mongo_db):
    from mongo import client, indexes

    await indexes.ensure_indexes(mongo_db)
    assert mongo_db.name in indexes._ensured
    client.server_changed()  # what the driver's monitoring calls on a restart
    assert mongo_db.name not in indexes._ensured


async def test_duplicates_make_enrollment_writes_503_and_write_nothing(
    api, regular, admin, make_user, create_course, mongo_db, monkeypatch, caplog
):
    from datetime import UTC, datetime

    from bson import ObjectId

    from mongo import indexes

    course = await create_course()
    await mongo_db.enrollments.drop_index("course_user_unique")
    pair = {"course_id": ObjectId(course["id"]), "user_id": 99, "username": "x"}
    now = datetime.now(UTC)
    await mongo_db.enrollments.insert_many([{**pair, "enrolled_at": now} for _ in range(2)])
    monkeypatch.setattr(indexes, "INDEXES_RECHECK_SECONDS", 0.0)
    other = await make_user()

    enroll = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert enroll.status_code == 503
    assert enroll.json()["code"] == "service_unavailable"
    assert enroll.headers["Retry-After"]
    assert "reconcile_enrollments --dedupe" in caplog.text
    bulk = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/",
        json={"user_ids": [other.id]},
        headers=admin[1],
    )
    assert bulk.status_code == 503
    single = await api.post(
        f"/api/courses/{course['id']}/assign/", json={"user_id": other.id}, headers=admin[1]
    )
    assert single.status_code == 503
    assert await mongo_db.enrollments.count_documents({}) == 2
    stored = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    assert stored["enrollers"] == 0
    assert not await indexes.enrollment_index_present()
