"""Enrollment lifecycle (docs/api.md): statuses, the seat guard and FIFO waitlist,
self-withdrawal and re-enrollment, promotion, admin read/withdraw/complete, enrollment
detail and the caller's filtered list. Roster and report: test_roster.py."""

import asyncio

from bson import ObjectId

COURSES = "/api/courses/"


def _enroll(course_id: str) -> str:
    return f"{COURSES}{course_id}/enroll/"


def _admin_enrollment(course_id: str, user_id: int) -> str:
    return f"{COURSES}{course_id}/enrollments/{user_id}/"


async def _users(make_user, auth_for, n: int) -> list[tuple]:
    users = [await make_user() for _ in range(n)]
    return [(user, await auth_for(user)) for user in users]


async def _positions(mongo_db, course_id: str) -> list[int]:
    """User ids of the waitlist in FIFO (key) order."""
    waiting = (
        await mongo_db.enrollments.find({"course_id": ObjectId(course_id), "status": "waitlisted"})
        .sort("waitlist_key", 1)
        .to_list(None)
    )
    return [e["user_id"] for e in waiting]


async def _enrollers(mongo_db, course_id: str) -> int:
    return (await mongo_db.courses.find_one({"_id": ObjectId(course_id)}))["enrollers"]


# Statuses and the waitlist


async def test_a_full_course_waitlists_with_fifo_positions(
    api, make_user, auth_for, create_course, invariants
):
    course = await create_course(capacity=1)
    (_, first), (_, second), (_, third) = await _users(make_user, auth_for, 3)
    seated = await api.post(_enroll(course["id"]), headers=first)
    assert seated.status_code == 201
    assert seated.json()["status"] == "active"
    assert seated.json()["waitlist_position"] is None
    assert seated.json()["is_overdue"] is False
    for headers, position in ((second, 1), (third, 2)):
        response = await api.post(_enroll(course["id"]), headers=headers)
        assert response.status_code == 201
        assert response.json()["status"] == "waitlisted"
        assert response.json()["waitlist_position"] == position
    repeat = await api.post(_enroll(course["id"]), headers=third)
    assert repeat.status_code == 200
    assert repeat.json()["waitlist_position"] == 2
    detail = (await api.get(f"{COURSES}{course['id']}/", headers=first)).json()
    assert detail["enrollers"] == 1
    assert detail["seats_left"] == 0
    assert await invariants(course["id"]) == 1


async def test_300_concurrent_enrolls_into_50_seats_then_20_withdrawals_promote_the_first_20(
    api, make_user, auth_for, create_course, invariants, mongo_db
):
    course = await create_course(capacity=50)
    users = await _users(make_user, auth_for, 300)
    responses = await asyncio.gather(
        *(api.post(_enroll(course["id"]), headers=h) for _, h in users)
    )
    assert all(r.status_code == 201 for r in responses)
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("active") == 50
    assert statuses.count("waitlisted") == 250
    assert await invariants(course["id"], in_order=False) == 50
    # Positions are 1..250 without gaps, in join order (the waitlist key: when the request
    # that found the course full started).
    queue = await _positions(mongo_db, course["id"])
    assert len(queue) == 250
    admin_headers = users[0][1]  # any user may read their own enrollment
    by_user = {user.id: headers for user, headers in users}
    sample = [queue[0], queue[99], queue[-1]]
    for expected, user_id in zip((1, 100, 250), sample, strict=True):
        mine = (await api.get("/api/enrollments/", headers=by_user[user_id])).json()["results"]
        assert mine[0]["waitlist_position"] == expected
    del admin_headers

    members = [u for u, r in zip(users, responses, strict=True) if r.json()["status"] == "active"]
    leaving = members[:20]
    withdrawn = await asyncio.gather(
        *(api.delete(_enroll(course["id"]), headers=h) for _, h in leaving)
    )
    assert all(r.status_code == 200 and r.json()["status"] == "withdrawn" for r in withdrawn)
    promoted = await mongo_db.enrollments.find(
        {"course_id": ObjectId(course["id"]), "user_id": {"$in": queue[:20]}}
    ).to_list(None)
    assert {e["status"] for e in promoted} == {"active"}
    assert await _positions(mongo_db, course["id"]) == queue[20:]
    assert await invariants(course["id"], in_order=False) == 50


async def test_repeat_of_a_waitlisted_or_completed_enrollment_is_200_unchanged(
    api, admin, make_user, auth_for, create_course
):
    course = await create_course(capacity=1)
    (member, member_headers), (_, waiting) = await _users(make_user, auth_for, 2)
    await api.post(_enroll(course["id"]), headers=member_headers)
    first = (await api.post(_enroll(course["id"]), headers=waiting)).json()
    assert (await api.post(_enroll(course["id"]), headers=waiting)).json() == first
    done = await api.post(
        _admin_enrollment(course["id"], member.id) + "complete/", headers=admin[1]
    )
    assert done.status_code == 200
    repeat = await api.post(_enroll(course["id"]), headers=member_headers)
    assert repeat.status_code == 200
    assert repeat.json() == done.json()


# Self-withdrawal and re-enrollment


async def test_withdraw_then_repeat_then_reenroll(api, regular, create_course, invariants):
    course = await create_course()
    enrolled = (await api.post(_enroll(course["id"]), headers=regular[1])).json()
    response = await api.delete(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 200
    withdrawn = response.json()
    assert withdrawn["id"] == enrolled["id"]
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["withdrawn_at"] is not None
    assert await invariants(course["id"]) == 0
    repeat = await api.delete(_enroll(course["id"]), headers=regular[1])
    assert repeat.status_code == 200
    assert repeat.json() == withdrawn
    back = await api.post(_enroll(course["id"]), headers=regular[1])
    assert back.status_code == 200
    assert back.json()["id"] == enrolled["id"]
    assert back.json()["status"] == "active"
    assert back.json()["withdrawn_at"] is None
    assert await invariants(course["id"]) == 1


async def test_withdraw_without_an_enrollment_is_404_and_writes_nothing(
    api, regular, create_course, mongo_db
):
    course = await create_course()
    before = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    response = await api.delete(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 404
    assert await mongo_db.courses.find_one({"_id": ObjectId(course["id"])}) == before
    missing = await api.delete(_enroll("65f0c0ffee0000000000abcd"), headers=regular[1])
    assert missing.status_code == 404


async def test_withdraw_a_completed_enrollment_is_409_already_completed(
    api, admin, regular, create_course, invariants
):
    course = await create_course()
    await api.post(_enroll(course["id"]), headers=regular[1])
    await api.post(_admin_enrollment(course["id"], regular[0].id) + "complete/", headers=admin[1])
    response = await api.delete(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 409
    assert response.json()["code"] == "already_completed"
    assert await invariants(course["id"]) == 1


async def test_an_admin_assigned_enrollment_is_403_for_its_user_and_withdrawable_by_an_admin(
    api, admin, regular, create_course, invariants, mongo_db
):
    course = await create_course()
    assigned = await api.post(
        f"{COURSES}{course['id']}/assign/", json={"user_id": regular[0].id}, headers=admin[1]
    )
    assert assigned.json()["assigned_by"] == admin[0].id
    response = await api.delete(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 403
    assert response.json()["code"] == "assigned_enrollment"
    stored = await mongo_db.enrollments.find_one({"course_id": ObjectId(course["id"])})
    assert stored["status"] == "active"
    by_admin = await api.delete(_admin_enrollment(course["id"], regular[0].id), headers=admin[1])
    assert by_admin.status_code == 200
    assert by_admin.json()["status"] == "withdrawn"
    assert await invariants(course["id"]) == 0


async def test_reenroll_into_a_full_course_waitlists_and_into_an_archived_one_is_409(
    api, admin, make_user, auth_for, create_course, invariants
):
    course = await create_course(capacity=1)
    (_, first), (_, second) = await _users(make_user, auth_for, 2)
    await api.post(_enroll(course["id"]), headers=first)
    await api.delete(_enroll(course["id"]), headers=first)
    await api.post(_enroll(course["id"]), headers=second)
    back = await api.post(_enroll(course["id"]), headers=first)
    assert back.status_code == 200
    assert back.json()["status"] == "waitlisted"
    assert back.json()["waitlist_position"] == 1
    await api.delete(_enroll(course["id"]), headers=first)
    await api.patch(f"{COURSES}{course['id']}/", json={"status": "archived"}, headers=admin[1])
    refused = await api.post(_enroll(course["id"]), headers=first)
    assert refused.status_code == 409
    assert refused.json()["code"] == "course_archived"
    assert await invariants(course["id"]) == 1


async def test_withdrawing_from_the_waitlist_keeps_positions_gapless(
    api, make_user, auth_for, create_course, invariants
):
    course = await create_course(capacity=1)
    users = await _users(make_user, auth_for, 4)
    for _, headers in users:
        await api.post(_enroll(course["id"]), headers=headers)
    left = await api.delete(_enroll(course["id"]), headers=users[2][1])
    assert left.json()["status"] == "withdrawn"
    assert left.json()["waitlist_position"] is None
    last = (await api.post(_enroll(course["id"]), headers=users[3][1])).json()
    assert last["waitlist_position"] == 2
    assert await invariants(course["id"]) == 1


async def test_storm_of_enroll_withdraw_reenroll_for_one_user_ends_consistent(
    api, make_user, auth_for, create_course, invariants, mongo_db
):
    """Many connections at once, same user, no reconcile: the counters match the final
    status, whatever it is, and every operation is settled."""
    course = await create_course(capacity=2)
    others = await _users(make_user, auth_for, 2)
    user, headers = (await _users(make_user, auth_for, 1))[0]
    await api.post(_enroll(course["id"]), headers=others[0][1])
    for _ in range(3):
        calls = []
        for i in range(30):
            if i % 3 == 1:
                calls.append(api.delete(_enroll(course["id"]), headers=headers))
            else:
                calls.append(api.post(_enroll(course["id"]), headers=headers))
        if True:
            calls.append(api.post(_enroll(course["id"]), headers=others[1][1]))
            calls.append(api.delete(_enroll(course["id"]), headers=others[1][1]))
        responses = await asyncio.gather(*calls)
        assert all(r.status_code in (200, 201, 404) for r in responses), [
            (r.status_code, r.text) for r in responses if r.status_code >= 300
        ]
        await invariants(course["id"], in_order=False)
    stored = await mongo_db.enrollments.count_documents(
        {"course_id": ObjectId(course["id"]), "user_id": user.id}
    )
    assert stored == 1


# Capacity changes


async def test_raising_capacity_promotes_at_once_and_lowering_removes_nobody(
    api, admin, make_user, auth_for, create_course, invariants, mongo_db
):
    course = await create_course(capacity=2)
    users = await _users(make_user, auth_for, 5)
    for _, headers in users:
        await api.post(_enroll(course["id"]), headers=headers)
    queue = await _positions(mongo_db, course["id"])
    raised = await api.patch(f"{COURSES}{course['id']}/", json={"capacity": 4}, headers=admin[1])
    assert raised.status_code == 200
    assert raised.json()["enrollers"] == 4
    assert raised.json()["seats_left"] == 0
    assert await _positions(mongo_db, course["id"]) == queue[2:]
    lowered = await api.patch(f"{COURSES}{course['id']}/", json={"capacity": 1}, headers=admin[1])
    assert lowered.json()["enrollers"] == 4
    assert lowered.json()["seats_left"] == 0
    assert await invariants(course["id"], in_order=False) == 4
    # Seats freed below the new capacity promote nobody until a seat is really free.
    await api.delete(_enroll(course["id"]), headers=users[0][1])
    assert await _positions(mongo_db, course["id"]) == queue[2:]
    unlimited = await api.patch(
        f"{COURSES}{course['id']}/", json={"capacity": None}, headers=admin[1]
    )
    assert unlimited.json()["enrollers"] == 4
    assert await _positions(mongo_db, course["id"]) == []
    assert await invariants(course["id"], in_order=False) == 4


async def test_withdrawal_from_a_full_course_promotes_and_the_embedded_list_stays_full(
    api, make_user, auth_for, create_course, invariants, settings, mongo_db
):
    settings.COURSE_EMBEDDED_MEMBERS = 3
    course = await create_course(capacity=5)
    users = await _users(make_user, auth_for, 6)
    for _, headers in users:
        await api.post(_enroll(course["id"]), headers=headers)
    # The newest member leaves the embedded list; the next older one comes back in front.
    await api.delete(_enroll(course["id"]), headers=users[4][1])
    assert await _positions(mongo_db, course["id"]) == []
    stored = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    listed = [u["user_id"] for u in stored["enrolled_users"]]
    assert len(listed) == 3
    assert users[4][0].id not in listed
    assert users[5][0].id in listed  # promoted: the most recent member
    assert await invariants(course["id"], in_order=False) == 5


# Admin read, withdraw, complete


async def test_admin_reads_and_completes_an_enrollment(
    api, admin, regular, create_course, invariants
):
    course = await create_course()
    enrolled = (await api.post(_enroll(course["id"]), headers=regular[1])).json()
    url = _admin_enrollment(course["id"], regular[0].id)
    read = await api.get(url, headers=admin[1])
    assert read.status_code == 200
    assert read.json() == enrolled
    done = await api.post(url + "complete/", headers=admin[1])
    assert done.status_code == 200
    assert done.json()["status"] == "completed"
    assert done.json()["completed_at"] is not None
    again = await api.post(url + "complete/", headers=admin[1])
    assert again.status_code == 200
    assert again.json() == done.json()
    assert await invariants(course["id"]) == 1


async def test_completing_a_waitlisted_or_withdrawn_enrollment_is_409_not_active(
    api, admin, make_user, auth_for, create_course, mongo_db
):
    course = await create_course(capacity=1)
    (_, first), (waiting, second) = await _users(make_user, auth_for, 2)
    await api.post(_enroll(course["id"]), headers=first)
    await api.post(_enroll(course["id"]), headers=second)
    url = _admin_enrollment(course["id"], waiting.id) + "complete/"
    response = await api.post(url, headers=admin[1])
    assert response.status_code == 409
    assert response.json()["code"] == "not_active"
    await api.delete(_enroll(course["id"]), headers=second)
    response = await api.post(url, headers=admin[1])
    assert response.status_code == 409
    assert response.json()["code"] == "not_active"
    stored = await mongo_db.enrollments.find_one({"user_id": waiting.id})
    assert stored["completed_at"] is None


async def test_admin_enrollment_endpoints_answer_404_for_unknown_ones(api, admin, create_course):
    course = await create_course()
    assert (
        await api.get(_admin_enrollment(course["id"], 424242), headers=admin[1])
    ).status_code == 404
    assert (
        await api.delete(_admin_enrollment(course["id"], 424242), headers=admin[1])
    ).status_code == 404
    assert (
        await api.post(_admin_enrollment(course["id"], 424242) + "complete/", headers=admin[1])
    ).status_code == 404
    unknown = _admin_enrollment("65f0c0ffee0000000000abcd", 1)
    assert (await api.get(unknown, headers=admin[1])).status_code == 404


# Enrollment detail and the caller's list


async def test_enrollment_detail_is_the_callers_own_or_any_for_an_admin(
    api, admin, regular, make_user, auth_for, create_course
):
    course = await create_course()
    mine = (await api.post(_enroll(course["id"]), headers=regular[1])).json()
    url = f"/api/enrollments/{mine['id']}/"
    assert (await api.get(url, headers=regular[1])).json() == mine
    assert (await api.get(url, headers=admin[1])).json() == mine
    other = await auth_for(await make_user())
    hidden = await api.get(url, headers=other)
    assert hidden.status_code == 404
    assert (
        await api.get("/api/enrollments/65f0c0ffee0000000000abcd/", headers=admin[1])
    ).status_code == 404


async def test_my_enrollments_filter_by_status_and_overdue(api, regular, create_course, mongo_db):
    active, done_course, late = [await create_course() for _ in range(3)]
    for course in (active, done_course, late):
        await api.post(_enroll(course["id"]), headers=regular[1])
    await mongo_db.enrollments.update_one(
        {"course_id": ObjectId(done_course["id"])}, {"$set": {"status": "completed"}}
    )
    from datetime import UTC, datetime

    await mongo_db.enrollments.update_one(
        {"course_id": ObjectId(late["id"])}, {"$set": {"due_at": datetime(2001, 1, 1, tzinfo=UTC)}}
    )
    completed = (await api.get("/api/enrollments/?status=completed", headers=regular[1])).json()
    assert [e["course_id"] for e in completed["results"]] == [done_course["id"]]
    assert completed["count"] == 1
    overdue = (await api.get("/api/enrollments/?overdue=true", headers=regular[1])).json()
    assert [e["course_id"] for e in overdue["results"]] == [late["id"]]
    assert overdue["results"][0]["is_overdue"] is True
    bad = await api.get("/api/enrollments/?status=lost", headers=regular[1])
    assert bad.status_code == 400
