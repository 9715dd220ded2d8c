"""Membership model v2: a bounded course document, counted exactly once without the
array guard (courses.membership, docs/scaling.md "Membership model")."""

import asyncio
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from bson import ObjectId
from django.core.management import call_command

from common.errors import ServiceUnavailable
from courses import membership, repository
from mongo.client import get_db
from tests.courses.test_assignment import _bulk_users


def _enroll(course_id: str) -> str:
    return f"/api/courses/{course_id}/enroll/"


def _assign_multiple(course_id: str) -> str:
    return f"/api/courses/{course_id}/assign-multiple/"


async def _command(name: str, *args: str) -> str:
    out = StringIO()
    await sync_to_async(call_command, thread_sensitive=False)(name, *args, stdout=out)
    return out.getvalue()


async def _crash_course_update(*args, **kwargs):
    raise ServiceUnavailable("The process died between the two writes.")


async def test_course_embeds_only_its_most_recent_members_and_counts_them_all(
    api, admin, make_user, auth_for, create_course, invariants, settings
):
    settings.COURSE_EMBEDDED_MEMBERS = 3
    course = await create_course()
    users = [await make_user() for _ in range(5)]
    for user in users:
        response = await api.post(_enroll(course["id"]), headers=await auth_for(user))
        assert response.status_code == 201
    detail = (await api.get(f"/api/courses/{course['id']}/", headers=admin[1])).json()
    assert detail["enrollers"] == 5
    assert detail["enrolled_users"] == [
        {"user_id": u.id, "username": u.username} for u in users[2:]
    ]  # newest last
    assert await invariants(course["id"]) == 5
    # A repeat changes nothing, not even the order.
    assert (
        await api.post(_enroll(course["id"]), headers=await auth_for(users[0]))
    ).status_code == 200
    assert await invariants(course["id"]) == 5


async def test_bulk_embeds_the_newest_of_its_users(api, admin, create_course, invariants, settings):
    settings.COURSE_EMBEDDED_MEMBERS = 10
    course = await create_course()
    ids = await _bulk_users(25, prefix="cohort")
    report = (
        await api.post(_assign_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1])
    ).json()
    assert report["enrollers"] == 25
    detail = (await api.get(f"/api/courses/{course['id']}/", headers=admin[1])).json()
    assert [u["user_id"] for u in detail["enrolled_users"]] == ids[-10:]
    assert await invariants(course["id"]) == 25


def _applied_course_updates(command_log) -> list[tuple[int, int, list[int]]]:
    """The course updates that applied, in the order they applied: (enrollers after, added,
    members pushed), from the commands and their replies (`enrollers` only grows)."""
    applied = []
    for event in command_log.named("findAndModify"):
        reply = command_log.replies.get(event.request_id) or {}
        if event.command["findAndModify"] != "courses" or not reply.get("value"):
            continue
        update = event.command["update"]
        pushed = [m["user_id"] for m in update["$push"]["enrolled_users"]["$each"]]
        applied.append((reply["value"]["enrollers"], update["$inc"]["enrollers"], pushed))
    return sorted(applied)


async def test_300_concurrent_enrolls_and_2_overlapping_bulk_assigns_with_a_cap_of_50(
    api, admin, auth_for, create_course, invariants, settings, command_log
):
    """The invariants hold, and the array is exactly the 50 members pushed last in the
    order in which the course updates applied ("most recent")."""
    settings.COURSE_EMBEDDED_MEMBERS = 50
    from accounts.models import User

    ids = await _bulk_users(400, prefix="spike")
    users = await sync_to_async(list)(User.objects.filter(pk__in=ids[:300]).order_by("id"))
    headers = [await auth_for(user) for user in users]
    course = await create_course()
    bulks = [ids[100:250] + ids[300:360], ids[200:300] + ids[340:400]]  # overlapping
    responses = await asyncio.gather(
        *(api.post(_enroll(course["id"]), headers=h) for h in headers),
        *(
            api.post(_assign_multiple(course["id"]), json={"user_ids": b}, headers=admin[1])
            for b in bulks
        ),
    )
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert await invariants(course["id"], in_order=False) == 400
    applied = _applied_course_updates(command_log)
    in_applied_order = [uid for _, _, pushed in applied for uid in pushed]
    stored = await get_db().courses.find_one({"_id": ObjectId(course["id"])})
    assert [u["user_id"] for u in stored["enrolled_users"]] == in_applied_order[-50:]
    # Every member was counted by exactly one applied update.
    assert sum(added for _, added, _ in applied) == applied[-1][0] == 400


async def test_repeat_out_of_the_ledger_window_never_counts_twice(
    api, regular, create_course, mongo_db, invariants, command_log
):
    """An operation that 512 newer ones pushed out of the ledger is presumed applied."""
    course = await create_course()
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    newer = [membership.new_op(bulk=False) for _ in range(membership.APPLIED_OPS)]
    await get_db().courses.update_one({"_id": ObjectId(course["id"])}, {"$set": {"applied": newer}})
    command_log.clear()
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 200
    assert len(command_log) == 2
    assert await invariants(course["id"]) == 1


async def test_crash_out_of_the_window_is_left_to_reconcile_which_repairs_it(
    api, regular, create_course, mongo_db, invariants, settings
):
    """The one case a retry cannot repair: the enrollment's operation never applied, and
    more than APPLIED_OPS newer ones did before the retry came. Reconcile counts it, and
    records it so that nothing counts it again."""
    user, headers = regular
    course = await create_course()
    stale = membership.new_op(bulk=False)
    await get_db().enrollments.insert_one(
        {
            "user_id": user.id,
            "username": user.username,
            "course_id": ObjectId(course["id"]),
            "status": "active",
            "enrolled_at": (await get_db().courses.find_one({}))["created_at"],
            "source": "self",
            "assigned_by": None,
            "op": stale,
        }
    )
    newer = [membership.new_op(bulk=False) for _ in range(membership.APPLIED_OPS)]
    await get_db().courses.update_one({"_id": ObjectId(course["id"])}, {"$set": {"applied": newer}})
    assert (await api.post(_enroll(course["id"]), headers=headers)).status_code == 200
    with pytest.raises(AssertionError):
        await invariants(course["id"])  # still short: out of the window
    out = await _command("reconcile_enrollments", "--grace", "0")
    assert f"{course['id']}: enrollers 0 -> 1" in out
    assert await invariants(course["id"]) == 1
    assert (await api.post(_enroll(course["id"]), headers=headers)).status_code == 200
    assert await invariants(course["id"]) == 1


async def test_reconcile_records_what_it_counted_so_a_late_retry_does_not_count_again(
    api, regular, create_course, mongo_db, invariants, monkeypatch
):
    course = await create_course()
    monkeypatch.setattr(repository, "course_apply_op", _crash_course_update)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 503
    monkeypatch.undo()
    out = await _command("reconcile_enrollments", "--grace", "0")
    assert f"{course['id']}: enrollers 0 -> 1" in out
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 200
    assert await invariants(course["id"]) == 1


async def test_reconcile_leaves_a_request_in_flight_alone(
    api, regular, create_course, mongo_db, invariants, monkeypatch
):
    """Within the grace period an unrecorded operation may belong to a running request,
    which counts it itself; reconcile must not count it first."""
    course = await create_course()
    monkeypatch.setattr(repository, "course_apply_op", _crash_course_update)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 503
    monkeypatch.undo()
    assert "all consistent" in await _command("reconcile_enrollments")
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 200
    assert await invariants(course["id"]) == 1


async def _failed_bulk(api, admin, monkeypatch, course_id: str, ids: list[int]) -> None:
    """A bulk assignment that dies between its insert and its course update."""
    monkeypatch.setattr(repository, "course_apply_op", _crash_course_update)
    failed = await api.post(_assign_multiple(course_id), json={"user_ids": ids}, headers=admin[1])
    assert failed.status_code == 503
    monkeypatch.undo()


async def test_identical_bulk_retry_counts_what_the_failed_one_inserted(
    api, admin, create_course, invariants, monkeypatch
):
    course = await create_course()
    ids = await _bulk_users(300, prefix="retry")
    await _failed_bulk(api, admin, monkeypatch, course["id"], ids)
    retry = (
        await api.post(_assign_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1])
    ).json()
    assert retry["summary"]["already_enrolled"] == 300
    assert retry["enrollers"] == 300
    assert await invariants(course["id"]) == 300
    again = (
        await api.post(_assign_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1])
    ).json()
    assert again["enrollers"] == 300
    assert await invariants(course["id"]) == 300


async def test_concurrent_identical_retries_after_a_failed_bulk_count_each_user_once(
    api, admin, create_course, invariants, monkeypatch
):
    course = await create_course()
    ids = await _bulk_users(200, prefix="twice")
    await _failed_bulk(api, admin, monkeypatch, course["id"], ids[:150])
    reports = await asyncio.gather(
        *(
            api.post(_assign_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1])
            for _ in range(3)
        )
    )
    assert all(r.status_code == 200 for r in reports)
    assert await invariants(course["id"], in_order=False) == 200


async def test_bulk_retry_writes_stay_constant(api, admin, create_course, command_log, monkeypatch):
    """Adopting a failed assignment's enrollments costs the same commands for 10 or 1,000."""
    shapes = []
    for n in (10, 1000):
        course = await create_course()
        ids = await _bulk_users(n, prefix=f"const{n}_")
        await _failed_bulk(api, admin, monkeypatch, course["id"], ids)
        command_log.clear()
        response = await api.post(
            _assign_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1]
        )
        assert response.json()["enrollers"] == n
        writes = command_log.named("insert", "update", "findAndModify", "delete")
        shapes.append([(e.command_name, e.command[e.command_name]) for e in writes])
    assert shapes[0] == shapes[1]
    # + 2: the stored report (its results' one bulk update, its head's insert).
    assert len(shapes[0]) <= 6, shapes[0]


async def test_migration_trims_legacy_courses_idempotently_and_they_keep_working(
    api, make_user, auth_for, create_course, mongo_db, invariants, settings
):
    settings.COURSE_EMBEDDED_MEMBERS = 100
    course = await create_course()
    ids = await _bulk_users(250, prefix="legacy")
    created = (await get_db().courses.find_one({}))["created_at"]
    await get_db().enrollments.insert_many(
        [
            {
                "user_id": uid,
                "username": f"legacy{i}",
                "course_id": ObjectId(course["id"]),
                "status": "active",
                "enrolled_at": created,
                "source": "admin",
                "assigned_by": None,
            }
            for i, uid in enumerate(ids)
        ]
    )
    await get_db().courses.update_one(
        {"_id": ObjectId(course["id"])},
        {
            "$set": {
                "enrollers": 250,
                "enrolled_users": [
                    {"user_id": uid, "username": f"legacy{i}"} for i, uid in enumerate(ids)
                ],
            },
            "$unset": {"applied": ""},
        },
    )
    out = await _command("migrate_course_documents")
    assert "1 migrated" in out
    stored = await get_db().courses.find_one({"_id": ObjectId(course["id"])})
    assert [u["user_id"] for u in stored["enrolled_users"]] == ids[-100:]
    assert stored["applied"] == []
    assert await invariants(course["id"]) == 250
    assert "0 migrated" in await _command("migrate_course_documents")
    newcomer = await make_user()
    response = await api.post(_enroll(course["id"]), headers=await auth_for(newcomer))
    assert response.status_code == 201
    assert await invariants(course["id"]) == 251


async def test_a_legacy_course_takes_enrollments_before_it_is_migrated(
    api, make_user, auth_for, create_course, mongo_db, settings
):
    settings.COURSE_EMBEDDED_MEMBERS = 5
    course = await create_course()
    legacy = [{"user_id": 10_000 + i, "username": f"old{i}"} for i in range(20)]
    await get_db().courses.update_one(
        {"_id": ObjectId(course["id"])},
        {"$set": {"enrollers": 20, "enrolled_users": legacy}, "$unset": {"applied": ""}},
    )
    newcomer = await make_user()
    assert (
        await api.post(_enroll(course["id"]), headers=await auth_for(newcomer))
    ).status_code == 201
    stored = await get_db().courses.find_one({"_id": ObjectId(course["id"])})
    assert stored["enrollers"] == 21
    assert [u["user_id"] for u in stored["enrolled_users"]] == [
        *[u["user_id"] for u in legacy[-4:]],
        newcomer.id,
    ]
