import asyncio

from bson import ObjectId

ENROLLMENT_KEYS = {
    "id",
    "user_id",
    "username",
    "course_id",
    "status",
    "enrolled_at",
    "source",
    "due_at",
}


async def test_first_enroll_is_201_and_repeat_is_200_with_the_same_enrollment(
    api, regular, create_course, invariants
):
    user, headers = regular
    course = await create_course()
    url = f"/api/courses/{course['id']}/enroll/"
    first = await api.post(url, headers=headers)
    assert first.status_code == 201
    enrollment = first.json()
    assert set(enrollment) == ENROLLMENT_KEYS
    assert enrollment["user_id"] == user.id
    assert enrollment["username"] == "alice"
    assert enrollment["course_id"] == course["id"]
    assert enrollment["status"] == "active"
    assert enrollment["source"] == "self"
    repeat = await api.post(url, headers=headers)
    assert repeat.status_code == 200
    assert repeat.json() == enrollment
    assert await invariants(course["id"]) == 1
    detail = (await api.get(f"/api/courses/{course['id']}/", headers=headers)).json()
    assert detail["enrollers"] == 1


async def test_enroll_requires_authentication(api, create_course, invariants):
    course = await create_course()
    response = await api.post(f"/api/courses/{course['id']}/enroll/")
    assert response.status_code == 401
    assert await invariants(course["id"]) == 0


async def test_enroll_ignores_a_body(api, regular, create_course):
    course = await create_course()
    response = await api.post(
        f"/api/courses/{course['id']}/enroll/", json={"user_id": 999}, headers=regular[1]
    )
    assert response.status_code == 201
    assert response.json()["user_id"] == regular[0].id


async def test_concurrent_enrollments_count_each_user_exactly_once(
    api, make_user, auth_for, create_course, invariants
):
    """200+ concurrent enroll requests for 100 users (with repeats) at one course."""
    course = await create_course()
    url = f"/api/courses/{course['id']}/enroll/"
    users = [await make_user() for _ in range(100)]
    headers = [await auth_for(user) for user in users]
    requests = [h for h in headers for _ in range(2)] + headers[:50]
    responses = await asyncio.gather(*(api.post(url, headers=h) for h in requests))
    assert all(r.status_code in (200, 201) for r in responses)
    created = {}
    for response in responses:
        if response.status_code == 201:
            uid = response.json()["user_id"]
            assert uid not in created, "two 201s for one user"
            created[uid] = response.json()["id"]
    assert set(created) == {u.id for u in users}
    for response in responses:  # every repeat returned the one enrollment
        assert response.json()["id"] == created[response.json()["user_id"]]
    assert await invariants(course["id"], in_order=False) == 100


async def test_my_enrollments_newest_first_with_titles_and_only_mine(
    api, regular, make_user, auth_for, create_course
):
    user, headers = regular
    courses = [await create_course(course_title=f"T{n}") for n in range(3)]
    for course in courses:
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    other = await auth_for(await make_user())
    await api.post(f"/api/courses/{courses[0]['id']}/enroll/", headers=other)
    page = (await api.get("/api/enrollments/", headers=headers)).json()
    assert page["count"] == 3
    assert [e["course_title"] for e in page["results"]] == ["T2", "T1", "T0"]
    assert all(e["user_id"] == user.id for e in page["results"])
    assert set(page["results"][0]) == ENROLLMENT_KEYS | {"course_title"}
    limited = (
        await api.get("/api/enrollments/", params={"limit": 1, "offset": 1}, headers=headers)
    ).json()
    assert [e["course_title"] for e in limited["results"]] == ["T1"]
    assert limited["next"]
    assert limited["previous"]


async def test_my_enrollments_looks_titles_up_in_one_query(
    api, regular, create_course, command_log
):
    courses = [await create_course(course_title=f"T{n}") for n in range(5)]
    for course in courses:
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    command_log.clear()
    await api.get("/api/enrollments/", headers=regular[1])
    finds = [c for c in command_log if c.command_name == "find"]
    assert [c.command["find"] for c in finds].count("courses") == 1


async def test_retried_enroll_repairs_a_course_update_that_failed(
    api, regular, create_course, mongo_db, invariants
):
    """A crash between the enrollment insert and the course update, then a client retry."""
    from courses import membership

    user, headers = regular
    course = await create_course()
    await mongo_db.enrollments.insert_one(
        {
            "_id": ObjectId(),
            "user_id": user.id,
            "username": user.username,
            "course_id": ObjectId(course["id"]),
            "status": "active",
            "enrolled_at": (await mongo_db.courses.find_one({}))["created_at"],
            "source": "self",
            "assigned_by": None,
            "op": membership.new_op(bulk=False),  # what the crashed request wrote
        }
    )
    retry = await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    assert retry.status_code == 200
    assert await invariants(course["id"]) == 1
    again = await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    assert again.status_code == 200
    assert await invariants(course["id"]) == 1


async def test_enroll_in_a_known_course_is_two_commands_first_time_and_on_repeat(
    api, regular, make_user, auth_for, create_course, command_log
):
    """The hot path: the course is known to exist, so one upsert of the enrollment (which
    also returns an existing one) and one guarded course update. Without an
    Idempotency-Key header, idempotency costs no command."""
    course = await create_course()
    # A new client verifies the indexes on its server once, before its first enrollment.
    warm_up = await auth_for(await make_user())
    assert (
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=warm_up)
    ).status_code == 201
    for expected_status in (201, 200):
        command_log.clear()
        response = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
        assert response.status_code == expected_status
        commands = [(e.command_name, e.command[e.command_name]) for e in command_log]
        assert commands == [("findAndModify", "enrollments"), ("findAndModify", "courses")]


async def test_enroll_with_a_key_costs_one_claim_and_one_store_and_a_replay_one_command(
    api, regular, make_user, auth_for, create_course, command_log
):
    course = await create_course()
    # A new client verifies the indexes on its server once, before its first enrollment.
    warm_up = await auth_for(await make_user())
    assert (
        await api.post(f"/api/courses/{course['id']}/enroll/", headers=warm_up)
    ).status_code == 201
    headers = {**regular[1], "Idempotency-Key": "cost"}
    command_log.clear()
    await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    assert [(e.command_name, e.command[e.command_name]) for e in command_log] == [
        ("findAndModify", "idempotency_keys"),
        ("findAndModify", "enrollments"),
        ("findAndModify", "courses"),
        ("update", "idempotency_keys"),
    ]
    command_log.clear()
    await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    assert [(e.command_name, e.command[e.command_name]) for e in command_log] == [
        ("findAndModify", "idempotency_keys")
    ]


async def test_enroll_in_a_course_removed_behind_the_services_back_is_404(
    api, regular, create_course, mongo_db
):
    course = await create_course()  # now remembered as existing
    await mongo_db.courses.delete_one({"_id": ObjectId(course["id"])})
    response = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert response.status_code == 404
    assert await mongo_db.enrollments.count_documents({}) == 0
