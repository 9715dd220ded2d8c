"""Bulk assignment and capacity (docs/api.md, "Admin assignment", "Capacity"): the seat
guard of the one counting write, the FIFO waitlist in request order, override_capacity,
dry runs, races with self-enrollments, and withdrawn users coming back."""

import asyncio

from bson import ObjectId

from courses import repository
from tests.courses.test_assignment import _bulk_users
from tests.courses.test_membership import _failed_bulk


def _multiple(course_id: str) -> str:
    return f"/api/courses/{course_id}/assign-multiple/"


def _enroll(course_id: str) -> str:
    return f"/api/courses/{course_id}/enroll/"


async def _enrollment(api, admin, course_id: str, user_id: int) -> dict:
    response = await api.get(f"/api/courses/{course_id}/enrollments/{user_id}/", headers=admin[1])
    assert response.status_code == 200
    return response.json()


async def _course_with_members(api, admin, create_course, capacity: int, members: list[int]):
    course = await create_course(capacity=capacity)
    seated = await api.post(_multiple(course["id"]), json={"user_ids": members}, headers=admin[1])
    assert seated.json()["summary"]["enrolled"] == len(members)
    return course


async def test_bulk_beyond_capacity_waitlists_the_rest_in_request_order(
    api, admin, create_course, invariants, mongo_db
):
    # Given a course of 10 seats with 3 members
    ids = await _bulk_users(15, prefix="seat")
    course = await _course_with_members(api, admin, create_course, 10, ids[:3])
    cohort = ids[3:][::-1]  # request order is not id order
    # When 12 more are assigned
    response = await api.post(_multiple(course["id"]), json={"user_ids": cohort}, headers=admin[1])
    # Then the first 7 requested take the seats and the last 5 wait, positions 1..5
    assert response.status_code == 200
    report = response.json()
    assert report["results"] == [
        {"user_id": uid, "status": "enrolled" if i < 7 else "waitlisted"}
        for i, uid in enumerate(cohort)
    ]
    assert report["summary"] == {
        "requested": 12,
        "enrolled": 7,
        "already_enrolled": 0,
        "waitlisted": 5,
        "not_found": 0,
        "inactive": 0,
        "duplicates_in_request": 0,
    }
    assert report["enrollers"] == 10
    for position, uid in enumerate(cohort[7:], start=1):
        enrollment = await _enrollment(api, admin, course["id"], uid)
        assert (enrollment["status"], enrollment["waitlist_position"]) == ("waitlisted", position)
        assert enrollment["source"] == "admin"
    assert await invariants(course["id"]) == 10
    stored = await api.get(f"/api/assignments/{report['id']}/", headers=admin[1])
    assert stored.json()["summary"]["waitlisted"] == 5
    # And a repeat changes nothing: they are enrolled or waiting already
    again = await api.post(_multiple(course["id"]), json={"user_ids": cohort}, headers=admin[1])
    assert again.json()["summary"]["already_enrolled"] == 12
    assert await invariants(course["id"]) == 10
    # And a member leaving promotes the first in line, who was requested eighth
    left = await api.delete(f"/api/courses/{course['id']}/enrollments/{ids[0]}/", headers=admin[1])
    assert left.status_code == 200
    assert (await _enrollment(api, admin, course["id"], cohort[7]))["status"] == "active"
    assert (await _enrollment(api, admin, course["id"], cohort[8]))["waitlist_position"] == 1
    assert await invariants(course["id"], in_order=False) == 10


async def test_a_later_bulk_waits_behind_everyone_already_waiting(
    api, admin, create_course, invariants
):
    ids = await _bulk_users(6, prefix="queue")
    course = await _course_with_members(api, admin, create_course, 2, ids[:2])
    first = await api.post(_multiple(course["id"]), json={"user_ids": ids[2:4]}, headers=admin[1])
    assert first.json()["summary"]["waitlisted"] == 2
    second = await api.post(_multiple(course["id"]), json={"user_ids": ids[4:]}, headers=admin[1])
    assert second.json()["summary"]["waitlisted"] == 2
    positions = [
        (await _enrollment(api, admin, course["id"], uid))["waitlist_position"] for uid in ids[2:]
    ]
    assert positions == [1, 2, 3, 4]
    assert await invariants(course["id"]) == 2


async def test_override_capacity_enrolls_everyone(api, admin, create_course, invariants, mongo_db):
    ids = await _bulk_users(15, prefix="over")
    course = await _course_with_members(api, admin, create_course, 10, ids[:3])
    response = await api.post(
        _multiple(course["id"]),
        json={"user_ids": ids[3:], "override_capacity": True},
        headers=admin[1],
    )
    report = response.json()
    assert report["summary"]["enrolled"] == 12
    assert report["summary"]["waitlisted"] == 0
    assert report["enrollers"] == 15  # beyond capacity: an admin overrode it
    assert await mongo_db.enrollments.count_documents({"status": "waitlisted"}) == 0
    assert await invariants(course["id"]) == 15
    stored = await api.get(f"/api/assignments/{report['id']}/", headers=admin[1])
    assert stored.json()["override_capacity"] is True


async def test_dry_run_predicts_the_split_and_writes_nothing(api, admin, create_course, mongo_db):
    ids = await _bulk_users(15, prefix="dry")
    course = await _course_with_members(api, admin, create_course, 10, ids[:3])
    before_course = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    before_enrollments = await mongo_db.enrollments.find({}).sort("_id", 1).to_list(None)
    before_reports = await mongo_db.assignments.count_documents({})
    body = {"user_ids": [*ids[3:], ids[0], 10**9]}
    predicted = await api.post(
        _multiple(course["id"]), json={**body, "dry_run": True}, headers=admin[1]
    )
    assert predicted.status_code == 200
    # Nothing was written
    assert await mongo_db.courses.find_one({"_id": ObjectId(course["id"])}) == before_course
    assert await mongo_db.enrollments.find({}).sort("_id", 1).to_list(None) == before_enrollments
    assert await mongo_db.assignments.count_documents({}) == before_reports
    # The assignment itself answers exactly the predicted report
    real = (await api.post(_multiple(course["id"]), json=body, headers=admin[1])).json()
    prediction = predicted.json()
    assert prediction["dry_run"] is True
    assert prediction["id"] is None
    assert prediction["summary"]["waitlisted"] == 5
    for key in ("results", "summary", "enrollers"):
        assert prediction[key] == real[key], key


async def test_bulk_into_a_full_course_waitlists_everyone_and_writes_the_same_commands(
    api, admin, create_course, invariants, command_log
):
    ids = await _bulk_users(14, prefix="full")
    course = await _course_with_members(api, admin, create_course, 2, ids[:2])
    command_log.clear()
    report = (
        await api.post(_multiple(course["id"]), json={"user_ids": ids[2:]}, headers=admin[1])
    ).json()
    assert report["summary"]["waitlisted"] == 12
    assert report["enrollers"] == 2
    writes = [
        e.command_name for e in command_log.named("insert", "update", "findAndModify", "delete")
    ]
    # The enrollments' insert (the waitlisted ones too), the stored report's two writes:
    # no course update when nobody takes a seat.
    assert writes == ["insert", "update", "insert"]
    assert await invariants(course["id"]) == 2


async def test_seats_taken_between_the_insert_and_the_count_go_back_to_the_waitlist(
    api, admin, make_user, auth_for, create_course, invariants, monkeypatch
):
    # Given a course of 10 with 3 members, and 3 self-enrollments that land while a bulk
    # of 6 sits between its insert and its course update
    ids = await _bulk_users(9, prefix="race")
    course = await _course_with_members(api, admin, create_course, 10, ids[:3])
    walkers = [await make_user() for _ in range(3)]
    headers = [await auth_for(u) for u in walkers]
    real_insert = repository.enrollment_insert_many

    async def insert_then_others_enroll(enrollments):
        lost = await real_insert(enrollments)
        for h in headers:
            assert (await api.post(_enroll(course["id"]), headers=h)).json()["status"] == "active"
        return lost

    monkeypatch.setattr(repository, "enrollment_insert_many", insert_then_others_enroll)
    cohort = ids[3:]
    report = (
        await api.post(_multiple(course["id"]), json={"user_ids": cohort}, headers=admin[1])
    ).json()
    monkeypatch.undo()
    # Then the bulk keeps the 4 seats left, for its first 4 requested, and the last 2 wait
    assert report["summary"]["enrolled"] == 4
    assert report["summary"]["waitlisted"] == 2
    assert [r["status"] for r in report["results"]] == ["enrolled"] * 4 + ["waitlisted"] * 2
    assert report["enrollers"] == 10
    for position, uid in enumerate(cohort[4:], start=1):
        assert (await _enrollment(api, admin, course["id"], uid))["waitlist_position"] == position
    assert await invariants(course["id"], in_order=False) == 10


async def test_concurrent_bulks_and_self_enrolls_never_oversell(
    api, admin, make_user, auth_for, create_course, invariants, mongo_db
):
    course = await create_course(capacity=30)
    ids = await _bulk_users(60, prefix="crowd")
    walkers = [await make_user() for _ in range(30)]
    headers = [await auth_for(u) for u in walkers]
    bulks = [
        api.post(_multiple(course["id"]), json={"user_ids": ids[i : i + 20]}, headers=admin[1])
        for i in range(0, 60, 20)
    ]
    enrolls = [api.post(_enroll(course["id"]), headers=h) for h in headers]
    responses = await asyncio.gather(*bulks, *enrolls)
    assert all(r.status_code in (200, 201) for r in responses)
    reports = [r.json() for r in responses[:3]]
    seated = sum(r["summary"]["enrolled"] for r in reports)
    seated += sum(r.json()["status"] == "active" for r in responses[3:])
    waiting = sum(r["summary"]["waitlisted"] for r in reports)
    waiting += sum(r.json()["status"] == "waitlisted" for r in responses[3:])
    # Every report tells the truth, and the course is exactly full
    assert (seated, waiting) == (30, 60)
    assert await invariants(course["id"], in_order=False) == 30
    positions = await mongo_db.enrollments.count_documents({"status": "waitlisted"})
    assert positions == 60


async def test_a_bulk_retry_after_a_crash_in_a_capped_course_converges(
    api, admin, create_course, invariants, monkeypatch
):
    ids = await _bulk_users(15, prefix="crash")
    course = await _course_with_members(api, admin, create_course, 10, ids[:3])
    await _failed_bulk(api, admin, monkeypatch, course["id"], ids[3:])
    retry = (
        await api.post(_multiple(course["id"]), json={"user_ids": ids[3:]}, headers=admin[1])
    ).json()
    assert retry["summary"]["already_enrolled"] == 12
    assert retry["enrollers"] == 10
    assert await invariants(course["id"]) == 10
    waiting = [(await _enrollment(api, admin, course["id"], u)) for u in ids[10:]]
    assert [e["waitlist_position"] for e in waiting] == [1, 2, 3, 4, 5]


async def test_a_withdrawn_user_assigned_again_comes_back(
    api, admin, regular, create_course, invariants, mongo_db
):
    # Given a user who enrolled and withdrew
    course = await create_course(capacity=2)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    assert (await api.delete(_enroll(course["id"]), headers=regular[1])).status_code == 200
    # When an admin assigns them in bulk
    response = await api.post(
        _multiple(course["id"]),
        json={"user_ids": [regular[0].id], "due_at": "2999-01-31T09:00:00Z"},
        headers=admin[1],
    )
    # Then the same enrollment is active again, assigned by the admin
    assert response.json()["results"] == [{"user_id": regular[0].id, "status": "enrolled"}]
    assert response.json()["enrollers"] == 1
    enrollment = await _enrollment(api, admin, course["id"], regular[0].id)
    assert enrollment["status"] == "active"
    assert enrollment["source"] == "admin"
    assert enrollment["withdrawn_at"] is None
    assert enrollment["due_at"] == "2999-01-31T09:00:00Z"
    assert await mongo_db.enrollments.count_documents({}) == 1
    assert await invariants(course["id"]) == 1


async def test_a_withdrawn_user_assigned_into_a_full_course_waits(
    api, admin, regular, create_course, invariants
):
    ids = await _bulk_users(1, prefix="taken")
    course = await create_course(capacity=1)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    assert (await api.delete(_enroll(course["id"]), headers=regular[1])).status_code == 200
    await api.post(_multiple(course["id"]), json={"user_ids": ids}, headers=admin[1])
    report = (
        await api.post(
            _multiple(course["id"]), json={"user_ids": [regular[0].id]}, headers=admin[1]
        )
    ).json()
    assert report["results"] == [{"user_id": regular[0].id, "status": "waitlisted"}]
    enrollment = await _enrollment(api, admin, course["id"], regular[0].id)
    assert (enrollment["status"], enrollment["waitlist_position"]) == ("waitlisted", 1)
    assert await invariants(course["id"]) == 1


async def test_a_withdrawn_user_who_reenrolls_meanwhile_keeps_their_own_enrollment(
    api, admin, regular, create_course, invariants, monkeypatch
):
    course = await create_course(capacity=5)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    assert (await api.delete(_enroll(course["id"]), headers=regular[1])).status_code == 200
    real_revive = repository.enrollment_revive

    async def reenroll_first(course_id, revivals):
        assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 200
        return await real_revive(course_id, revivals)

    monkeypatch.setattr(repository, "enrollment_revive", reenroll_first)
    report = (
        await api.post(
            _multiple(course["id"]), json={"user_ids": [regular[0].id]}, headers=admin[1]
        )
    ).json()
    monkeypatch.undo()
    assert report["results"] == [{"user_id": regular[0].id, "status": "already_enrolled"}]
    assert report["enrollers"] == 1
    enrollment = await _enrollment(api, admin, course["id"], regular[0].id)
    assert (enrollment["status"], enrollment["source"]) == ("active", "self")
    assert await invariants(course["id"]) == 1


async def test_single_assign_waitlists_into_a_full_course_unless_overridden(
    api, admin, create_course, invariants
):
    ids = await _bulk_users(3, prefix="single")
    course = await _course_with_members(api, admin, create_course, 1, ids[:1])
    url = f"/api/courses/{course['id']}/assign/"

    waiting = await api.post(url, json={"user_id": ids[1]}, headers=admin[1])
    assert waiting.status_code == 201
    assert waiting.json()["status"] == "waitlisted"
    assert waiting.json()["waitlist_position"] == 1

    seated = await api.post(
        url, json={"user_id": ids[2], "override_capacity": True}, headers=admin[1]
    )
    assert seated.status_code == 201
    assert seated.json()["status"] == "active"
    assert seated.json()["source"] == "admin"
    again = await api.post(
        url, json={"user_id": ids[2], "override_capacity": True}, headers=admin[1]
    )
    assert again.status_code == 200
    assert again.json()["id"] == seated.json()["id"]
    # beyond capacity (an admin overrode it); the waitlisted user still waits
    assert await invariants(course["id"], in_order=False) == 2
    detail = await api.get(f"/api/courses/{course['id']}/", headers=admin[1])
    assert detail.json()["enrollers"] == 2
