from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from common.errors import ServiceUnavailable
from courses import repository


async def _crash_course_update(*args, **kwargs):
    raise ServiceUnavailable("MongoDB went away between the two writes.")


async def _reconcile(*args: str) -> str:
    out = StringIO()
    await sync_to_async(call_command, thread_sensitive=False)(
        "reconcile_enrollments", *args, stdout=out
    )
    return out.getvalue()


@pytest.fixture
def reconcile_on_test_db(settings, mongo_db):
    """The command runs its own event loop and client, against this test's database."""
    return _reconcile


async def test_failure_between_writes_is_503_and_reconcile_repairs_it(
    api,
    regular,
    make_user,
    auth_for,
    admin,
    create_course,
    invariants,
    mongo_db,
    monkeypatch,
    reconcile_on_test_db,
):
    course = await create_course()
    healthy = await create_course(course_title="Untouched")
    await api.post(f"/api/courses/{healthy['id']}/enroll/", headers=regular[1])
    others = [await make_user() for _ in range(3)]

    monkeypatch.setattr(repository, "course_apply_op", _crash_course_update)
    response = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert response.status_code == 503
    assert response.json()["detail"]
    bulk = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/",
        json={"user_ids": [u.id for u in others]},
        headers=admin[1],
    )
    assert bulk.status_code == 503
    monkeypatch.undo()

    with pytest.raises(AssertionError):
        await invariants(course["id"])
    assert "all consistent" in await reconcile_on_test_db()  # maybe still running: grace
    dry = await reconcile_on_test_db("--dry-run", "--grace", "0")
    assert "would fix" in dry
    assert course["id"] in dry
    assert healthy["id"] not in dry
    with pytest.raises(AssertionError):
        await invariants(course["id"])  # a dry run changes nothing

    out = await reconcile_on_test_db("--grace", "0")
    assert f"{course['id']}: enrollers 0 -> 4" in out
    assert await invariants(course["id"]) == 4
    assert await invariants(healthy["id"]) == 1
    again = await reconcile_on_test_db("--course", course["id"])
    assert "all consistent" in again


async def test_reconcile_removes_strays_and_duplicates(
    mongo_db, create_course, invariants, reconcile_on_test_db
):
    from bson import ObjectId

    course = await create_course()
    await mongo_db.courses.update_one(
        {"_id": ObjectId(course["id"])},
        {
            "$set": {
                "enrollers": 3,
                "enrolled_users": [{"user_id": 1, "username": "a"}] * 2
                + [{"user_id": 2, "username": "b"}],
            }
        },
    )
    out = await reconcile_on_test_db("--course", course["id"])
    assert "removed [1, 1, 2]" in out
    assert await invariants(course["id"]) == 0


async def test_reconcile_rejects_a_bad_course_id(reconcile_on_test_db):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        await reconcile_on_test_db("--course", "nope")


async def test_retried_bulk_after_failure_counts_the_uncounted_then_reconcile_agrees(
    api, admin, make_user, create_course, invariants, monkeypatch, reconcile_on_test_db
):
    course = await create_course()
    users = [await make_user() for _ in range(5)]
    ids = [u.id for u in users]
    monkeypatch.setattr(repository, "course_apply_op", _crash_course_update)
    assert (
        await api.post(
            f"/api/courses/{course['id']}/assign-multiple/",
            json={"user_ids": ids[:3]},
            headers=admin[1],
        )
    ).status_code == 503
    monkeypatch.undo()
    report = (
        await api.post(
            f"/api/courses/{course['id']}/assign-multiple/",
            json={"user_ids": ids},
            headers=admin[1],
        )
    ).json()
    assert report["summary"]["enrolled"] == 2
    assert report["summary"]["already_enrolled"] == 3
    assert report["enrollers"] == 5  # the three the failed request inserted are counted too
    assert await invariants(course["id"]) == 5
    assert "all consistent" in await reconcile_on_test_db("--grace", "0")
    assert await invariants(course["id"]) == 5


def _copy(course_id: str, user_id: int, at, **fields) -> dict:
    from bson import ObjectId

    return {
        "_id": ObjectId(),
        "user_id": user_id,
        "username": f"user{user_id}",
        "course_id": ObjectId(course_id),
        "status": "active",
        "enrolled_at": at,
        "source": "admin",
        "assigned_by": None,
        **fields,
    }


@pytest.fixture
async def without_unique_index(mongo_db):
    """The enrollments collection as a MongoDB restarted without its data leaves it."""
    await mongo_db.enrollments.drop_index("course_user_unique")
    return mongo_db


async def _unique_index_exists(mongo_db) -> bool:
    from mongo.indexes import enrollment_index_present

    return await enrollment_index_present()


async def test_reconcile_refuses_to_count_duplicates_in_and_changes_nothing(
    create_course, without_unique_index, reconcile_on_test_db
):
    from datetime import UTC, datetime

    from bson import ObjectId
    from django.core.management import CommandError

    mongo_db = without_unique_index
    course = await create_course()
    now = datetime.now(UTC)
    await mongo_db.enrollments.insert_many([_copy(course["id"], 7, now) for _ in range(3)])

    with pytest.raises(CommandError) as refused:
        await reconcile_on_test_db()
    assert "1 (course, user) pair(s) have more than one enrollment (2 surplus" in str(refused.value)
    assert "run with --dedupe" in str(refused.value)
    stored = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    assert stored["enrollers"] == 0
    assert stored["enrolled_users"] == []
    assert await mongo_db.enrollments.count_documents({}) == 3


async def test_dedupe_keeps_the_oldest_then_repairs_counters_and_the_index(
    create_course, without_unique_index, invariants, reconcile_on_test_db
):
    from datetime import UTC, datetime, timedelta

    from bson import ObjectId

    mongo_db = without_unique_index
    course = await create_course()
    other = await create_course(course_title="Other")
    base = datetime(2025, 3, 1, tzinfo=UTC)
    late = _copy(course["id"], 1, base + timedelta(hours=1))
    oldest = _copy(course["id"], 1, base)
    tie = {**_copy(course["id"], 1, base), "_id": ObjectId()}  # same time, later _id
    single = _copy(course["id"], 2, base)
    elsewhere = [_copy(other["id"], 1, base + timedelta(minutes=m)) for m in (5, 3)]
    await mongo_db.enrollments.insert_many([late, tie, oldest, single, *elsewhere])
    assert tie["_id"] > oldest["_id"]
    await mongo_db.courses.update_one(
        {"_id": ObjectId(course["id"])},
        {"$set": {"enrollers": 4, "enrolled_users": [{"user_id": 1, "username": "u"}] * 4}},
    )

    dry = await reconcile_on_test_db("--dedupe", "--dry-run")
    assert "would remove them" in dry
    assert await mongo_db.enrollments.count_documents({}) == 6

    out = await reconcile_on_test_db("--dedupe")
    assert "2 (course, user) pair(s) have more than one enrollment (3 surplus" in out
    assert "removed 3, kept the oldest of each" in out
    remaining = {e["_id"] async for e in mongo_db.enrollments.find({})}
    assert remaining == {oldest["_id"], single["_id"], elsewhere[1]["_id"]}
    assert await invariants(course["id"]) == 2
    assert await invariants(other["id"]) == 1
    assert await _unique_index_exists(mongo_db)
    assert "all consistent" in await reconcile_on_test_db()


async def test_reconcile_reports_orphans_and_removes_them_only_when_asked(
    api, regular, create_course, mongo_db, invariants, reconcile_on_test_db
):
    from datetime import UTC, datetime

    from bson import ObjectId

    course = await create_course()
    await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    gone = str(ObjectId())
    now = datetime.now(UTC)
    await mongo_db.enrollments.insert_many([_copy(gone, uid, now) for uid in (1, 2, 3)])

    report = await reconcile_on_test_db()
    assert f"3 orphan enrollment(s) of 1 missing course(s): {gone} (3)" in report
    assert "run with --orphans to remove them" in report
    assert "all consistent" not in report
    dry = await reconcile_on_test_db("--orphans", "--dry-run")
    assert "would remove them" in dry
    assert await mongo_db.enrollments.count_documents({"course_id": ObjectId(gone)}) == 3

    removed = await reconcile_on_test_db("--orphans")
    assert "removed 3" in removed
    assert await mongo_db.enrollments.count_documents({"course_id": ObjectId(gone)}) == 0
    assert await invariants(course["id"]) == 1
    assert "all consistent" in await reconcile_on_test_db()


# Version 2: the lifecycle's transitions


async def test_a_withdrawal_that_died_between_its_writes_is_counted_out_by_a_retry_or_reconcile(
    api, make_user, auth_for, create_course, invariants, monkeypatch, reconcile_on_test_db
):
    course = await create_course(capacity=2)
    users = [await make_user() for _ in range(3)]
    headers = [await auth_for(u) for u in users]
    for h in headers:
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=h)
    monkeypatch.setattr(repository, "course_apply_leave", _crash_course_update)
    for h in headers[:2]:
        response = await api.delete(f"/api/courses/{course['id']}/enroll/", headers=h)
        assert response.status_code == 503
    monkeypatch.undo()
    with pytest.raises(AssertionError):
        await invariants(course["id"], in_order=False)
    # The client's retry converges on its own...
    retry = await api.delete(f"/api/courses/{course['id']}/enroll/", headers=headers[0])
    assert retry.status_code == 200
    # ...and reconcile repairs the other, promoting the waitlisted user into the freed seat.
    await reconcile_on_test_db("--grace", "0")
    assert await invariants(course["id"], in_order=False) == 1
    waiting = await api.get("/api/enrollments/?status=waitlisted", headers=headers[2])
    assert waiting.json()["count"] == 0


async def test_a_join_that_died_before_waitlisting_is_waitlisted_by_a_repeat_or_reconcile(
    api, make_user, auth_for, create_course, invariants, monkeypatch, reconcile_on_test_db
):
    from courses import services

    async def crash(*args, **kwargs):
        raise ServiceUnavailable("died after retiring its join")

    course = await create_course(capacity=1)
    users = [await make_user() for _ in range(3)]
    headers = [await auth_for(u) for u in users]
    await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers[0])
    monkeypatch.setattr(services, "_to_waitlist", crash)
    for h in headers[1:]:
        assert (
            await api.post(f"/api/courses/{course['id']}/enroll/", headers=h)
        ).status_code == 503
    monkeypatch.undo()
    with pytest.raises(AssertionError):
        await invariants(course["id"])
    repeat = await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers[1])
    assert repeat.status_code == 200
    assert repeat.json()["status"] == "waitlisted"
    await reconcile_on_test_db("--grace", "0")
    assert await invariants(course["id"]) == 1
    last = (await api.get("/api/enrollments/", headers=headers[2])).json()["results"][0]
    assert last["status"] == "waitlisted"
    assert last["waitlist_position"] == 2


async def test_reconcile_gives_a_keyless_waitlisted_enrollment_the_last_position(
    api, make_user, auth_for, create_course, invariants, mongo_db, reconcile_on_test_db
):
    from bson import ObjectId

    course = await create_course(capacity=1)
    users = [await make_user() for _ in range(3)]
    headers = [await auth_for(u) for u in users]
    for h in headers:
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=h)
    await mongo_db.enrollments.update_one(
        {"course_id": ObjectId(course["id"]), "user_id": users[1].id},
        {"$set": {"waitlist_key": None}},
    )
    await reconcile_on_test_db("--grace", "0")
    assert await invariants(course["id"]) == 1
    mine = (await api.get("/api/enrollments/", headers=headers[1])).json()["results"][0]
    assert mine["waitlist_position"] == 2
