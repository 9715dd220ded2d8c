"""The roster (cursor pages, filters, CSV stream) and the course report."""

import csv
import io
from datetime import UTC, datetime

from bson import ObjectId

COURSES = "/api/courses/"


def _roster(course_id: str) -> str:
    return f"{COURSES}{course_id}/enrollments/"


async def _fill(api, make_user, auth_for, course_id: str, n: int) -> list:
    users = []
    for i in range(n):
        user = await make_user(username=f"{'Ann' if i % 2 else 'bob'}{i:02d}")
        await api.post(f"{COURSES}{course_id}/enroll/", headers=await auth_for(user))
        users.append(user)
    return users


async def test_roster_pages_by_cursor_oldest_first(api, admin, make_user, auth_for, create_course):
    course = await create_course()
    users = await _fill(api, make_user, auth_for, course["id"], 7)
    seen, url = [], _roster(course["id"]) + "?limit=3"
    pages = 0
    while url:
        response = await api.get(url, headers=admin[1])
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"next", "results"}
        seen += [e["user_id"] for e in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3
    assert seen == [u.id for u in users]


async def test_roster_filters_by_status_overdue_and_username_prefix(
    api, admin, make_user, auth_for, create_course, mongo_db
):
    course = await create_course(capacity=4)
    users = await _fill(api, make_user, auth_for, course["id"], 6)
    await mongo_db.enrollments.update_one(
        {"user_id": users[0].id}, {"$set": {"due_at": datetime(2001, 1, 1, tzinfo=UTC)}}
    )
    url = _roster(course["id"])
    waiting = (await api.get(url + "?status=waitlisted", headers=admin[1])).json()["results"]
    assert [e["user_id"] for e in waiting] == [users[4].id, users[5].id]
    assert [e["waitlist_position"] for e in waiting] == [1, 2]
    overdue = (await api.get(url + "?overdue=true", headers=admin[1])).json()["results"]
    assert [e["user_id"] for e in overdue] == [users[0].id]
    assert overdue[0]["is_overdue"] is True
    found = (await api.get(url + "?search=ann", headers=admin[1])).json()["results"]
    assert [e["username"] for e in found] == ["Ann01", "Ann03", "Ann05"]
    for bad in ("?status=gone", "?cursor=nope", "?limit=0", "?format=xml", "?overdue=maybe"):
        assert (await api.get(url + bad, headers=admin[1])).status_code == 400, bad


async def test_roster_is_admin_only_and_404_for_an_unknown_course(api, admin, regular):
    assert (await api.get(_roster("65f0c0ffee0000000000abcd"), headers=admin[1])).status_code == 404
    assert (
        await api.get(_roster("65f0c0ffee0000000000abcd"), headers=regular[1])
    ).status_code == 403


async def test_roster_csv_streams_every_enrollment(
    api, admin, make_user, auth_for, create_course, monkeypatch
):
    from courses import repository

    # Small batches so the stream takes several reads.
    monkeypatch.setattr(repository, "ROSTER_STREAM_BATCH", 2)
    course = await create_course(capacity=3)
    users = await _fill(api, make_user, auth_for, course["id"], 5)
    response = await api.get(_roster(course["id"]) + "?format=csv", headers=admin[1])
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["user_id", "username", "status", "enrolled_at", "due_at", "completed_at"]
    assert [int(r[0]) for r in rows[1:]] == [u.id for u in users]
    assert [r[2] for r in rows[1:]] == ["active"] * 3 + ["waitlisted"] * 2
    only = await api.get(_roster(course["id"]) + "?format=csv&status=waitlisted", headers=admin[1])
    assert len(only.text.splitlines()) == 3


async def test_report_counts_by_status(api, admin, make_user, auth_for, create_course, mongo_db):
    course = await create_course(capacity=3)
    users = await _fill(api, make_user, auth_for, course["id"], 5)
    base = f"{COURSES}{course['id']}/enrollments/"
    await api.post(f"{base}{users[0].id}/complete/", headers=admin[1])
    await api.delete(f"{base}{users[4].id}/", headers=admin[1])
    await mongo_db.enrollments.update_one(
        {"user_id": users[1].id}, {"$set": {"due_at": datetime(2001, 1, 1, tzinfo=UTC)}}
    )
    response = await api.get(f"{COURSES}{course['id']}/report/", headers=admin[1])
    assert response.status_code == 200
    assert response.json() == {
        "course_id": course["id"],
        "counts": {"active": 2, "waitlisted": 1, "completed": 1, "withdrawn": 1},
        "members": 3,
        "capacity": 3,
        "seats_left": 0,
        "overdue": 1,
        "completion_rate": 0.3333,
    }
    stored = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    assert stored["enrollers"] == 3


async def test_report_of_an_empty_course_and_of_an_unknown_one(api, admin, regular, create_course):
    course = await create_course()
    report = (await api.get(f"{COURSES}{course['id']}/report/", headers=admin[1])).json()
    assert report["completion_rate"] == 0
    assert report["members"] == 0
    assert report["seats_left"] is None
    unknown = await api.get(f"{COURSES}65f0c0ffee0000000000abcd/report/", headers=admin[1])
    assert unknown.status_code == 404
    forbidden = await api.get(f"{COURSES}{course['id']}/report/", headers=regular[1])
    assert forbidden.status_code == 403
