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
