import asyncio
import re

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User


def _url(course_id: str, multiple: bool = False) -> str:
    return f"/api/courses/{course_id}/{'assign-multiple' if multiple else 'assign'}/"


async def _bulk_users(n: int, *, prefix: str = "hire", active: bool = True) -> list[int]:
    def create() -> list[int]:
        users = User.objects.bulk_create(
            [
                User(
                    username=f"{prefix}{i}",
                    email=f"{prefix}{i}@corp.example",
                    is_active=active,
                    password="!",
                )
                for i in range(n)
            ],
            batch_size=1000,
        )
        if users and users[0].pk is None:  # backends that do not return ids
            return list(
                User.objects.filter(username__startswith=prefix)
                .order_by("id")
                .values_list("id", flat=True)
            )
        return [u.pk for u in users]

    return await sync_to_async(create)()


# Single assign


async def test_assign_creates_admin_enrollment_then_200(
    api, admin, regular, create_course, invariants
):
    course = await create_course()
    response = await api.post(_url(course["id"]), json={"user_id": regular[0].id}, headers=admin[1])
    assert response.status_code == 201
    enrollment = response.json()
    assert enrollment["source"] == "admin"
    assert enrollment["user_id"] == regular[0].id
    assert enrollment["username"] == "alice"
    again = await api.post(_url(course["id"]), json={"user_id": regular[0].id}, headers=admin[1])
    assert again.status_code == 200
    assert again.json() == enrollment
    self_enroll = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    assert self_enroll.status_code == 200
    assert self_enroll.json() == enrollment
    assert await invariants(course["id"]) == 1


async def test_assign_records_the_admin(api, admin, regular, create_course, mongo_db):
    course = await create_course()
    await api.post(_url(course["id"]), json={"user_id": regular[0].id}, headers=admin[1])
    stored = await mongo_db.enrollments.find_one({})
    assert stored["assigned_by"] == admin[0].id
    assert stored["source"] == "admin"


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 999_999},
        {"user_id": "7"},
        {"user_id": 1.5},
        {"user_id": True},
        {"user_id": None},
        {},
        {"user_id": -1},
        {"user_id": 2**70},
        {"user_ids": [1]},
    ],
)
async def test_assign_rejects_bad_user_ids(api, admin, create_course, invariants, body):
    course = await create_course()
    response = await api.post(_url(course["id"]), json=body, headers=admin[1])
    assert response.status_code == 400
    assert "user_id" in response.json() or "user_ids" in response.json()
    assert await invariants(course["id"]) == 0


async def test_assign_rejects_inactive_user(api, admin, make_user, create_course, invariants):
    user = await make_user(is_active=False)
    course = await create_course()
    response = await api.post(_url(course["id"]), json={"user_id": user.id}, headers=admin[1])
    assert response.status_code == 400
    assert response.json() == {"user_id": [f"User {user.id} is inactive."]}
    assert await invariants(course["id"]) == 0


async def test_assign_to_unknown_course_is_404(api, admin, regular):
    response = await api.post(_url("0" * 24), json={"user_id": regular[0].id}, headers=admin[1])
    assert response.status_code == 404


@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 401),
        ("regular", 403),
        ("inactive", 403),
        ("inactive_staff", 403),
        ("staff", None),
        ("superuser", None),
    ],
)
async def test_assign_permissions(
    api, role_headers, regular, create_course, invariants, role, expected, multiple
):
    course = await create_course()
    body = {"user_ids": [regular[0].id]} if multiple else {"user_id": regular[0].id}
    response = await api.post(
        _url(course["id"], multiple), json=body, headers=await role_headers(role)
    )
    if expected is None:
        assert response.status_code == (200 if multiple else 201)
        assert await invariants(course["id"]) == 1
    else:
        assert response.status_code == expected
        assert await invariants(course["id"]) == 0


# Bulk assign


async def test_bulk_report_covers_every_status(api, admin, make_user, create_course, invariants):
    course = await create_course()
    enrolled_before = await make_user()
    await api.post(_url(course["id"]), json={"user_id": enrolled_before.id}, headers=admin[1])
    fresh = [await make_user() for _ in range(2)]
    inactive = await make_user(is_active=False)
    missing = 987_654
    ids = [fresh[0].id, enrolled_before.id, missing, fresh[0].id, inactive.id, fresh[1].id, missing]
    response = await api.post(_url(course["id"], True), json={"user_ids": ids}, headers=admin[1])
    assert response.status_code == 200
    report = response.json()
    assert re.fullmatch("[0-9a-f]{24}", report.pop("id"))
    assert report == {
        "course_id": course["id"],
        "dry_run": False,
        "summary": {
            "requested": 7,
            "enrolled": 2,
            "already_enrolled": 1,
            "waitlisted": 0,
            "not_found": 1,
            "inactive": 1,
            "duplicates_in_request": 2,
        },
        "results": [
            {"user_id": fresh[0].id, "status": "enrolled"},
            {"user_id": enrolled_before.id, "status": "already_enrolled"},
            {"user_id": missing, "status": "not_found"},
            {"user_id": inactive.id, "status": "inactive"},
            {"user_id": fresh[1].id, "status": "enrolled"},
        ],
        "enrollers": 3,
    }
    assert await invariants(course["id"]) == 3
    repeat = (
        await api.post(_url(course["id"], True), json={"user_ids": ids}, headers=admin[1])
    ).json()
    assert repeat["summary"]["enrolled"] == 0
    assert repeat["summary"]["already_enrolled"] == 3
    assert repeat["enrollers"] == 3
    assert await invariants(course["id"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"user_ids": []},
        {"user_ids": [1, "2"]},
        {"user_ids": [1, 2.5]},
        {"user_ids": [True]},
        {"user_ids": "1,2"},
        {"user_ids": None},
        {},
        {"user_ids": [1], "extra": 1},
        {"user_ids": [0]},
        {"user_ids": [[1]]},
        {"user_ids": [2**64]},
    ],
)
async def test_bulk_validation_changes_nothing(
    api, admin, regular, create_course, invariants, body
):
    course = await create_course()
    if body.get("user_ids") == [1, "2"]:
        body = {"user_ids": [regular[0].id, "2"]}
    response = await api.post(_url(course["id"], True), json=body, headers=admin[1])
    assert response.status_code == 400
    assert await invariants(course["id"]) == 0


async def test_bulk_over_the_maximum_is_400(api, admin, create_course, invariants, settings):
    settings.ASSIGN_MAX_USERS = 10
    course = await create_course()
    response = await api.post(
        _url(course["id"], True), json={"user_ids": list(range(1, 12))}, headers=admin[1]
    )
    assert response.status_code == 400
    assert response.json() == {"user_ids": ["At most 10 user ids per request."]}
    assert await invariants(course["id"]) == 0


async def test_bulk_to_unknown_course_is_404(api, admin, regular, mongo_db):
    response = await api.post(
        _url("f" * 24, True), json={"user_ids": [regular[0].id]}, headers=admin[1]
    )
    assert response.status_code == 404
    assert await mongo_db.enrollments.count_documents({}) == 0


async def test_bulk_write_commands_do_not_grow_with_n(api, admin, create_course, command_log):
    """1 user and 5,000 users: the same MongoDB writes (the enrollments' insert, the course's
    findAndModify, then the stored report: its results' update and its head's insert)."""
    ids = await _bulk_users(5000)
    counts = {}
    for n in (1, 5000):
        course = await create_course()
        command_log.clear()
        response = await api.post(
            _url(course["id"], True), json={"user_ids": ids[:n]}, headers=admin[1]
        )
        assert response.json()["summary"]["enrolled"] == n
        writes = [
            e.command_name for e in command_log.named("insert", "update", "findAndModify", "delete")
        ]
        reads = command_log.named("find", "getMore", "aggregate")
        counts[n] = writes
        assert len(reads) <= 1 + (n + 999) // 1000 * 2, [e.command_name for e in reads]
    assert counts[1] == counts[5000] == ["insert", "findAndModify", "update", "insert"]


async def test_bulk_of_5000_users(api, admin, create_course, invariants):
    ids = await _bulk_users(5000)
    course = await create_course()
    half = ids[:2500]
    first = (
        await api.post(_url(course["id"], True), json={"user_ids": half}, headers=admin[1])
    ).json()
    assert first["summary"]["enrolled"] == 2500
    second = (
        await api.post(_url(course["id"], True), json={"user_ids": ids}, headers=admin[1])
    ).json()
    assert second["summary"] == {
        "requested": 5000,
        "enrolled": 2500,
        "already_enrolled": 2500,
        "waitlisted": 0,
        "not_found": 0,
        "inactive": 0,
        "duplicates_in_request": 0,
    }
    assert [r["user_id"] for r in second["results"]] == ids
    assert second["enrollers"] == 5000
    assert await invariants(course["id"]) == 5000


async def test_bulk_races_with_self_enrollment(api, admin, auth_for, create_course, invariants):
    """Bulk assignment concurrent with self-enrollments of the same users: each user once."""
    ids = await _bulk_users(300, prefix="racer")
    users = await sync_to_async(list)(User.objects.filter(pk__in=ids[:60]))
    headers = [await auth_for(user) for user in users]
    course = await create_course()
    enroll = f"/api/courses/{course['id']}/enroll/"
    bulk = [
        api.post(_url(course["id"], True), json={"user_ids": ids}, headers=admin[1])
        for _ in range(2)
    ]
    selfs = [api.post(enroll, headers=h) for h in headers for _ in range(2)]
    responses = await asyncio.gather(*bulk, *selfs)
    reports = [r.json() for r in responses[:2]]
    assert all(r.status_code in (200, 201) for r in responses)
    enrolled_by_bulk = [
        s["user_id"] for rep in reports for s in rep["results"] if s["status"] == "enrolled"
    ]
    self_created = [r.json()["user_id"] for r in responses[2:] if r.status_code == 201]
    # Every user was inserted exactly once, by exactly one of the competing requests.
    assert sorted(enrolled_by_bulk + self_created) == sorted(ids)
    assert await invariants(course["id"], in_order=False) == 300


async def test_bulk_assign_into_a_course_deleted_mid_request_takes_its_writes_back(
    api, admin, make_user, create_course, mongo_db, settings
):
    """The course exists when checked and is deleted (behind the service) just as the bulk
    insert goes out: the course update finds no course, so the request answers 404 and
    deletes what it inserted."""
    from bson import ObjectId
    from pymongo import MongoClient
    from pymongo.monitoring import CommandListener

    from mongo.client import get_db, reset_client

    course = await create_course()
    users = [await make_user() for _ in range(3)]
    uri = settings.MONGODB_URI

    class DeleteCourseOnInsert(CommandListener):
        def started(self, event):
            if event.command_name == "insert" and event.command["insert"] == "enrollments":
                with MongoClient(uri) as other:  # another client: a real, separate delete
                    other[mongo_db.name].courses.delete_one({"_id": ObjectId(course["id"])})

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    await reset_client([DeleteCourseOnInsert()])
    try:
        response = await api.post(
            f"/api/courses/{course['id']}/assign-multiple/",
            json={"user_ids": [u.id for u in users]},
            headers=admin[1],
        )
    finally:
        await reset_client([])
    assert response.status_code == 404
    assert response.json() == {"detail": "Course not found.", "code": "not_found"}
    db = get_db()  # the fixture's handle belongs to the client closed above
    assert await db.courses.count_documents({}) == 0
    assert await db.enrollments.count_documents({}) == 0
