"""A course of 100,000 members built through the service's own bulk path.

About half a minute on the 2-core development VM (SQL users included), so it is not part
of the default suite: `MEMBERSHIP_LARGE=1 make test` (or this file alone) runs it; the
1,000,000-member version is the "course of 1,000,000 members" section of `make bench`.
"""

import os

import bson
import pytest
from bson import ObjectId

from mongo.client import get_db
from tests.courses.test_assignment import _bulk_users

MEMBERS = 100_000
CHUNK = 10_000

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("MEMBERSHIP_LARGE") != "1", reason="heavy: set MEMBERSHIP_LARGE=1"
    ),
    pytest.mark.timeout(600),
]


async def test_a_course_of_100000_members_stays_small_and_cheap(
    api, admin, make_user, auth_for, create_course, invariants, command_log, settings
):
    course = await create_course()
    url = f"/api/courses/{course['id']}/assign-multiple/"
    ids = await _bulk_users(MEMBERS, prefix="member")
    for start in range(0, MEMBERS, CHUNK):
        response = await api.post(
            url, json={"user_ids": ids[start : start + CHUNK]}, headers=admin[1]
        )
        assert response.status_code == 200
        assert response.json()["summary"]["enrolled"] == CHUNK
    newcomer = await make_user()
    headers = await auth_for(newcomer)
    command_log.clear()
    first = await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    repeat = await api.post(f"/api/courses/{course['id']}/enroll/", headers=headers)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert len(command_log) == 4  # two commands each
    detail = (await api.get(f"/api/courses/{course['id']}/", headers=admin[1])).json()
    assert detail["enrollers"] == MEMBERS + 1
    assert len(detail["enrolled_users"]) == settings.COURSE_EMBEDDED_MEMBERS
    assert detail["enrolled_users"][-1]["user_id"] == newcomer.id
    raw = await get_db().courses.find_one({"_id": ObjectId(course["id"])})
    assert len(bson.encode(raw)) < 64 * 1024
    assert await invariants(course["id"]) == MEMBERS + 1
