"""A course whose document cannot take another member (MongoDB's 16 MiB limit) answers 409
on enroll, assign and assign-multiple, and keeps nothing of the refused request."""

import bson
import pytest
from bson import ObjectId

from courses import repository

LIMIT = 16 * 1024 * 1024
FILLERS = 8
FULL = {
    "detail": "This course cannot take more members: its document reached MongoDB's 16 MiB limit.",
    "code": "course_document_full",
}


@pytest.fixture
async def full_course(create_course, mongo_db):
    """A course with FILLERS members (consistent enrollments included) whose document is
    16 bytes short of 16 MiB: too little for any further member. Few members with very long
    names build it in a few writes instead of ~200,000 enrollments."""
    course = await create_course()
    course_id = ObjectId(course["id"])
    doc = await mongo_db.courses.find_one({"_id": course_id})
    users = [
        {"user_id": 10_000_000 + i, "username": "f" * (LIMIT // (FILLERS + 1))}
        for i in range(FILLERS)
    ]
    users[-1]["username"] += "f" * (
        LIMIT - 16 - len(bson.encode({**doc, "enrolled_users": users, "enrollers": FILLERS}))
    )
    await mongo_db.courses.update_one(
        {"_id": course_id}, {"$set": {"enrolled_users": users, "enrollers": FILLERS}}
    )
    await mongo_db.enrollments.insert_many(
        [
            {
                "_id": ObjectId(),
                "user_id": user["user_id"],
                "username": user["username"],
                "course_id": course_id,
                "status": "active",
                "enrolled_at": repository.now(),
                "source": "admin",
                "assigned_by": None,
            }
            for user in users
        ]
    )
    stored = await mongo_db.courses.find_one({"_id": course_id})
    assert len(bson.encode(stored)) == LIMIT - 16
    return course["id"]


async def test_enroll_into_a_full_course_is_409_and_keeps_nothing(
    api, regular, full_course, invariants, mongo_db
):
    user, headers = regular
    response = await api.post(f"/api/courses/{full_course}/enroll/", headers=headers)
    assert response.status_code == 409
    assert response.json() == FULL
    assert await mongo_db.enrollments.count_documents({"user_id": user.id}) == 0
    assert await invariants(full_course) == FILLERS


async def test_retry_after_a_crash_takes_the_uncounted_enrollment_back(
    api, regular, full_course, invariants, mongo_db
):
    """An enrollment written by an attempt that died before counting cannot be counted in
    a full course: the retry answers 409 and removes it, restoring the invariant."""
    user, headers = regular
    await mongo_db.enrollments.insert_one(
        {
            "user_id": user.id,
            "username": user.username,
            "course_id": ObjectId(full_course),
            "status": "active",
            "enrolled_at": repository.now(),
            "source": "self",
        }
    )
    response = await api.post(f"/api/courses/{full_course}/enroll/", headers=headers)
    assert response.status_code == 409
    assert await mongo_db.enrollments.count_documents({"user_id": user.id}) == 0
    assert await invariants(full_course) == FILLERS


async def test_assign_into_a_full_course_is_409_and_keeps_nothing(
    api, admin, regular, full_course, invariants, mongo_db
):
    user, _ = regular
    response = await api.post(
        f"/api/courses/{full_course}/assign/", json={"user_id": user.id}, headers=admin[1]
    )
    assert response.status_code == 409
    assert response.json() == FULL
    assert await mongo_db.enrollments.count_documents({"user_id": user.id}) == 0
    assert await invariants(full_course) == FILLERS


async def test_assign_multiple_into_a_full_course_is_409_and_keeps_nothing(
    api, admin, make_user, full_course, invariants, mongo_db
):
    users = [await make_user() for _ in range(3)]
    response = await api.post(
        f"/api/courses/{full_course}/assign-multiple/",
        json={"user_ids": [u.id for u in users]},
        headers=admin[1],
    )
    assert response.status_code == 409
    assert response.json() == FULL
    assert (
        await mongo_db.enrollments.count_documents({"user_id": {"$in": [u.id for u in users]}}) == 0
    )
    assert await invariants(full_course) == FILLERS
