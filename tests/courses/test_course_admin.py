"""Version 2 course fields and administration: capacity, the enrollment window, status
(archive), seats_left, updated_at, PATCH, and the list's status/search/ordering."""

import asyncio
from datetime import UTC, datetime

import pytest
from bson import Decimal128, ObjectId

COURSES = "/api/courses/"
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
V2_DEFAULTS = {
    "capacity": None,
    "seats_left": None,
    "enrollment_opens_at": None,
    "enrollment_closes_at": None,
    "status": "open",
}
VALID = {
    "course_title": "Secure Coding",
    "course_description": "OWASP top ten.",
    "display_price": {"amount": "49.99", "currency": "USD"},
}


def _detail(course_id: str) -> str:
    return f"{COURSES}{course_id}/"


def _enroll(course_id: str) -> str:
    return f"{COURSES}{course_id}/enroll/"


async def _stored(mongo_db, course_id: str) -> dict:
    return await mongo_db.courses.find_one({"_id": ObjectId(course_id)})


async def _enrolled_users(make_user, auth_for, n: int) -> list[tuple]:
    users = [await make_user() for _ in range(n)]
    return [(user, await auth_for(user)) for user in users]


# Creating


async def test_new_fields_default_on_create(api, admin):
    response = await api.post(COURSES, json=VALID, headers=admin[1])
    assert response.status_code == 201
    course = response.json()
    assert {k: course[k] for k in V2_DEFAULTS} == V2_DEFAULTS
    assert course["updated_at"] == course["created_at"]


async def test_create_with_every_new_field(api, admin, mongo_db):
    body = {
        **VALID,
        "capacity": 3,
        "enrollment_opens_at": "2030-01-01T10:00:00+02:00",
        "enrollment_closes_at": "2030-02-01T08:00:00.123456Z",
        "status": "archived",
    }
    response = await api.post(COURSES, json=body, headers=admin[1])
    assert response.status_code == 201
    course = response.json()
    assert course["capacity"] == 3
    assert course["seats_left"] == 3
    # Any explicit offset is accepted and answered in UTC, at millisecond precision.
    assert course["enrollment_opens_at"] == "2030-01-01T08:00:00Z"
    assert course["enrollment_closes_at"] == "2030-02-01T08:00:00.123000Z"
    assert course["status"] == "archived"
    stored = await _stored(mongo_db, course["id"])
    assert stored["capacity"] == 3
    assert stored["enrollment_opens_at"] == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert stored["status"] == "archived"
    assert stored["title_words"] == ["secure", "coding"]
    detail = await api.get(_detail(course["id"]), headers=admin[1])
    assert {k: detail.json()[k] for k in course} == course


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": "5"}, "capacity"),
        ({"capacity": 5.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 2**63}, "capacity"),
        ({"enrollment_opens_at": "yesterday"}, "enrollment_opens_at"),
        ({"enrollment_opens_at": "2030-01-01T00:00:00"}, "enrollment_opens_at"),  # no zone
        ({"enrollment_opens_at": "2030-02-30T00:00:00Z"}, "enrollment_opens_at"),
        ({"enrollment_opens_at": "0001-01-01T00:00:00+01:00"}, "enrollment_opens_at"),
        ({"enrollment_opens_at": 1_700_000_000}, "enrollment_opens_at"),
        ({"enrollment_closes_at": ["2030-01-01T00:00:00Z"]}, "enrollment_closes_at"),
        (
            {
                "enrollment_opens_at": "2030-01-02T00:00:00Z",
                "enrollment_closes_at": "2030-01-01T00:00:00Z",
            },
            "enrollment_closes_at",
        ),
        (
            {
                "enrollment_opens_at": "2030-01-01T00:00:00Z",
                "enrollment_closes_at": "2030-01-01T00:00:00Z",
            },
            "enrollment_closes_at",
        ),
        ({"status": "closed"}, "status"),
        ({"status": 1}, "status"),
        ({"status": None}, "status"),
        ({"seats_left": 3}, "seats_left"),
        ({"updated_at": PAST}, "updated_at"),
    ],
)
async def test_create_validation(api, admin, mongo_db, change, field):
    response = await api.post(COURSES, json={**VALID, **change}, headers=admin[1])
    assert response.status_code == 400
    assert field in response.json()
    assert await mongo_db.courses.count_documents({}) == 0


async def test_a_course_document_from_before_version_2_reads_with_the_defaults(
    api, admin, regular, mongo_db, invariants
):
    """No migration: missing fields read as null/"open", and the course works as before."""
    created = datetime(2024, 5, 1, tzinfo=UTC)
    legacy_id = ObjectId()
    await mongo_db.courses.insert_one(
        {
            "_id": legacy_id,
            "course_title": "Legacy Safety Induction",
            "course_description": "",
            "display_price": {"amount": Decimal128("0.00"), "currency": "EUR"},
            "enrolled_users": [],
            "enrollers": 0,
            "created_at": created,
            "updated_at": created,
        }
    )
    course_id = str(legacy_id)
    detail = (await api.get(_detail(course_id), headers=regular[1])).json()
    assert {k: detail[k] for k in V2_DEFAULTS} == V2_DEFAULTS
    listed = (await api.get(COURSES, headers=regular[1])).json()
    assert [c["id"] for c in listed["results"]] == [course_id]
    found = (await api.get(f"{COURSES}?search=SAFETY", headers=regular[1])).json()
    assert found["count"] == 1
    assert (await api.post(_enroll(course_id), headers=regular[1])).status_code == 201
    assert await invariants(course_id) == 1
    patched = await api.patch(_detail(course_id), json={"capacity": 5}, headers=admin[1])
    assert patched.status_code == 200
    assert patched.json()["seats_left"] == 4


# PATCH


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"course_title": "Renamed"}, {"course_title": "Renamed"}),
        ({"course_description": ""}, {"course_description": ""}),
        (
            {"display_price": {"amount": "5", "currency": "EUR"}},
            {"display_price": {"amount": "5.00", "currency": "EUR"}},
        ),
        ({"capacity": 10}, {"capacity": 10, "seats_left": 10}),
        ({"capacity": None}, {"capacity": None, "seats_left": None}),
        ({"enrollment_opens_at": PAST}, {"enrollment_opens_at": PAST}),
        ({"enrollment_closes_at": FUTURE}, {"enrollment_closes_at": FUTURE}),
        ({"status": "archived"}, {"status": "archived"}),
        ({"status": "open"}, {"status": "open"}),
    ],
)
async def test_admin_patches_a_field(api, admin, create_course, mongo_db, change, shown):
    course = await create_course(capacity=2)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    await mongo_db.courses.update_one(
        {"_id": ObjectId(course["id"])}, {"$set": {"updated_at": old}}
    )
    response = await api.patch(_detail(course["id"]), json=change, headers=admin[1])
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in shown} == shown
    untouched = {k: v for k, v in course.items() if k not in shown and k != "updated_at"}
    assert {k: body[k] for k in untouched} == untouched
    assert "enrolled_users" not in body
    stored = await _stored(mongo_db, course["id"])
    assert stored["updated_at"] > old
    assert body["updated_at"] == stored["updated_at"].isoformat().replace("+00:00", "Z")
    detail = (await api.get(_detail(course["id"]), headers=admin[1])).json()
    assert {k: detail[k] for k in body} == body


async def test_patch_several_fields_at_once(api, admin, create_course):
    course = await create_course()
    change = {
        "course_title": "Advanced",
        "capacity": 1,
        "enrollment_opens_at": PAST,
        "enrollment_closes_at": FUTURE,
        "status": "archived",
    }
    response = await api.patch(_detail(course["id"]), json=change, headers=admin[1])
    assert response.status_code == 200
    assert {k: response.json()[k] for k in change} == change


async def test_renaming_a_course_changes_what_search_finds(api, admin, create_course):
    course = await create_course(course_title="Fire Safety")
    await api.patch(_detail(course["id"]), json={"course_title": "First Aid"}, headers=admin[1])
    assert (await api.get(f"{COURSES}?search=fire", headers=admin[1])).json()["count"] == 0
    assert (await api.get(f"{COURSES}?search=aid", headers=admin[1])).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enrollers": 0}, "enrollers"),
        ({"enrolled_users": []}, "enrolled_users"),
        ({"id": "65f0c0ffee0000000000abcd"}, "id"),
        ({"created_at": PAST}, "created_at"),
        ({"updated_at": PAST}, "updated_at"),
        ({"seats_left": 1}, "seats_left"),
        ({"course_title": "x", "enrollers": 9}, "enrollers"),
        ({"teacher": "bob"}, "teacher"),
        ({"$set": {"enrollers": 9}}, "$set"),
        ({}, "non_field_errors"),
        ({"course_title": ""}, "course_title"),
        ({"course_title": None}, "course_title"),
        ({"display_price": None}, "display_price"),
        ({"display_price": {"amount": "1.00"}}, "display_price"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": "3"}, "capacity"),
        ({"status": "deleted"}, "status"),
        ({"enrollment_opens_at": "soon"}, "enrollment_opens_at"),
        ({"enrollment_opens_at": FUTURE, "enrollment_closes_at": PAST}, "enrollment_closes_at"),
    ],
)
async def test_patch_validation_changes_nothing(api, admin, create_course, mongo_db, body, field):
    course = await create_course()
    before = await _stored(mongo_db, course["id"])
    response = await api.patch(_detail(course["id"]), json=body, headers=admin[1])
    assert response.status_code == 400
    assert field in response.json()
    assert await _stored(mongo_db, course["id"]) == before


async def test_patch_names_read_only_fields_as_such(api, admin, create_course):
    course = await create_course()
    response = await api.patch(_detail(course["id"]), json={"enrollers": 7}, headers=admin[1])
    assert response.json() == {"enrollers": ["This field is read-only."]}


@pytest.mark.parametrize("body", [[], "archived", None, 3])
async def test_patch_body_must_be_an_object(api, admin, create_course, mongo_db, body):
    course = await create_course()
    before = await _stored(mongo_db, course["id"])
    response = await api.patch(_detail(course["id"]), json=body, headers=admin[1])
    assert response.status_code == 400
    assert await _stored(mongo_db, course["id"]) == before


@pytest.mark.parametrize(
    ("stored", "change", "field"),
    [
        (
            {"enrollment_closes_at": "2030-01-01T00:00:00Z"},
            {"enrollment_opens_at": "2030-01-01T00:00:00Z"},
            "enrollment_opens_at",
        ),
        (
            {"enrollment_closes_at": "2030-01-01T00:00:00Z"},
            {"enrollment_opens_at": FUTURE},
            "enrollment_opens_at",
        ),
        (
            {"enrollment_opens_at": "2030-01-01T00:00:00Z"},
            {"enrollment_closes_at": PAST},
            "enrollment_closes_at",
        ),
    ],
)
async def test_patch_checks_one_window_bound_against_the_stored_other(
    api, admin, create_course, mongo_db, stored, change, field
):
    course = await create_course(**stored)
    before = await _stored(mongo_db, course["id"])
    response = await api.patch(_detail(course["id"]), json=change, headers=admin[1])
    assert response.status_code == 400
    assert field in response.json()
    assert await _stored(mongo_db, course["id"]) == before


async def test_patch_moves_or_clears_a_window_bound_past_the_stored_other(
    api, admin, create_course
):
    course = await create_course(
        enrollment_opens_at=PAST, enrollment_closes_at="2001-01-01T00:00:00Z"
    )
    both = {"enrollment_opens_at": "2050-01-01T00:00:00Z", "enrollment_closes_at": FUTURE}
    response = await api.patch(_detail(course["id"]), json=both, headers=admin[1])
    assert response.status_code == 200
    cleared = await api.patch(
        _detail(course["id"]), json={"enrollment_closes_at": None}, headers=admin[1]
    )
    assert cleared.status_code == 200
    later = await api.patch(
        _detail(course["id"]), json={"enrollment_opens_at": FUTURE}, headers=admin[1]
    )
    assert later.json()["enrollment_opens_at"] == FUTURE
    assert later.json()["enrollment_closes_at"] is None


async def test_patch_of_an_unknown_course_is_404(api, admin, mongo_db):
    for course_id in (str(ObjectId()), "not-an-object-id", "65f0c0ffee0000000000abc"):
        response = await api.patch(_detail(course_id), json={"capacity": 3}, headers=admin[1])
        assert response.status_code == 404, course_id
        assert "detail" in response.json()
    assert await mongo_db.courses.count_documents({}) == 0


async def test_lowering_capacity_below_enrollers_removes_nobody(
    api, admin, create_course, make_user, auth_for, invariants
):
    course = await create_course(capacity=5)
    for _, headers in await _enrolled_users(make_user, auth_for, 3):
        assert (await api.post(_enroll(course["id"]), headers=headers)).status_code == 201
    response = await api.patch(_detail(course["id"]), json={"capacity": 1}, headers=admin[1])
    assert response.status_code == 200
    assert response.json()["enrollers"] == 3
    assert response.json()["seats_left"] == 0
    assert await invariants(course["id"]) == 3


async def test_seats_left_follows_enrollments(api, create_course, regular):
    course = await create_course(capacity=2)
    await api.post(_enroll(course["id"]), headers=regular[1])
    detail = (await api.get(_detail(course["id"]), headers=regular[1])).json()
    assert detail["seats_left"] == 1


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 401),
        ("regular", 403),
        ("inactive_staff", 403),
        ("staff", 200),
        ("superuser", 200),
    ],
)
async def test_patch_permissions(api, create_course, mongo_db, role_headers, role, expected):
    course = await create_course()
    headers = await role_headers(role)
    response = await api.patch(_detail(course["id"]), json={"status": "archived"}, headers=headers)
    assert response.status_code == expected
    stored = await _stored(mongo_db, course["id"])
    assert stored["status"] == ("archived" if expected == 200 else "open")


# The list


async def _three_courses(create_course, api, admin) -> dict[str, dict]:
    courses = {
        "go": await create_course(course_title="Go Basics"),
        "rust": await create_course(course_title="Advanced Rust"),
        "old": await create_course(course_title="Go Legacy"),
    }
    await api.patch(_detail(courses["old"]["id"]), json={"status": "archived"}, headers=admin[1])
    return courses


async def test_the_list_hides_archived_courses(api, admin, regular, create_course):
    courses = await _three_courses(create_course, api, admin)
    for headers in (regular[1], admin[1]):
        body = (await api.get(COURSES, headers=headers)).json()
        assert [c["id"] for c in body["results"]] == [courses["rust"]["id"], courses["go"]["id"]]
        assert body["count"] == 2
    open_only = (await api.get(f"{COURSES}?status=open", headers=regular[1])).json()
    assert open_only["count"] == 2


async def test_admins_list_archived_or_all_courses(api, admin, create_course):
    courses = await _three_courses(create_course, api, admin)
    archived = (await api.get(f"{COURSES}?status=archived", headers=admin[1])).json()
    assert [c["id"] for c in archived["results"]] == [courses["old"]["id"]]
    assert archived["count"] == 1
    everything = (await api.get(f"{COURSES}?status=all&limit=2", headers=admin[1])).json()
    assert everything["count"] == 3
    assert len(everything["results"]) == 2
    assert everything["next"] is not None


@pytest.mark.parametrize("status", ["archived", "all"])
async def test_regular_users_cannot_list_archived_courses(
    api, admin, regular, create_course, status
):
    await _three_courses(create_course, api, admin)
    response = await api.get(f"{COURSES}?status={status}", headers=regular[1])
    assert response.status_code == 403
    assert response.json()["detail"] == "Only admins can list archived courses."


@pytest.mark.parametrize(
    "query",
    [
        "status=closed",
        "status=",
        "ordering=price",
        "ordering=",
        "ordering=-id",
        f"search={'x' * 201}",
    ],
)
async def test_bad_list_parameters_are_400(api, admin, regular, create_course, query):
    await create_course()
    for headers in (regular[1], admin[1]):
        response = await api.get(f"{COURSES}?{query}", headers=headers)
        assert response.status_code == 400, query
        assert query.split("=")[0] in response.json()


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("go", ["go"]),
        ("GO", ["go"]),
        ("basics go", ["go"]),
        ("bas", ["go"]),
        ("rust", ["rust"]),
        ("advanced   RUST", ["rust"]),
        ("ust", []),  # a word's start, not any substring
        ("go rust", []),
        ("", ["rust", "go"]),
        (".*", ["rust", "go"]),  # no words at all: no filter
        ("go.*", ["go"]),  # punctuation separates words, never reaches MongoDB as a pattern
        ("^adv", ["rust"]),
        ("(", ["rust", "go"]),
        ('{"$where": "1"}', []),
    ],
)
async def test_search_matches_title_words(api, admin, create_course, search, expected):
    courses = await _three_courses(create_course, api, admin)
    response = await api.get(COURSES, params={"search": search}, headers=admin[1])
    assert response.status_code == 200
    body = response.json()
    assert [c["id"] for c in body["results"]] == [courses[k]["id"] for k in expected]
    assert body["count"] == len(expected)


async def test_search_of_archived_courses_for_admins(api, admin, create_course):
    courses = await _three_courses(create_course, api, admin)
    body = (await api.get(f"{COURSES}?status=all&search=go", headers=admin[1])).json()
    assert [c["id"] for c in body["results"]] == [courses["old"]["id"], courses["go"]["id"]]
    assert body["count"] == 2


async def test_ordering(api, admin, create_course, make_user, auth_for):
    b = await create_course(course_title="Beta")
    a = await create_course(course_title="Alpha")
    c = await create_course(course_title="Gamma")
    for _, headers in await _enrolled_users(make_user, auth_for, 2):
        await api.post(_enroll(c["id"]), headers=headers)
    ((_, one),) = await _enrolled_users(make_user, auth_for, 1)
    await api.post(_enroll(b["id"]), headers=one)
    expected = {
        "created_at": [b, a, c],
        "-created_at": [c, a, b],
        "course_title": [a, b, c],
        "-course_title": [c, b, a],
        "enrollers": [a, b, c],
        "-enrollers": [c, b, a],
    }
    for ordering, courses in expected.items():
        body = (await api.get(f"{COURSES}?ordering={ordering}", headers=admin[1])).json()
        assert [x["id"] for x in body["results"]] == [x["id"] for x in courses], ordering
    default = (await api.get(COURSES, headers=admin[1])).json()
    assert [x["id"] for x in default["results"]] == [c["id"], a["id"], b["id"]]


async def test_list_indexes_exist(mongo_db):
    from mongo.client import cursor

    names = {index["name"] async for index in await cursor(mongo_db.courses.list_indexes())}
    assert {"created_at", "course_title", "enrollers", "title_words", "status"} <= names


# Archived courses and enrollment windows


async def test_detail_of_an_archived_course_is_readable_by_everyone(
    api, admin, regular, create_course
):
    course = await create_course(status="archived")
    response = await api.get(_detail(course["id"]), headers=regular[1])
    assert response.status_code == 200
    assert response.json()["status"] == "archived"


async def test_enroll_in_an_archived_course_is_409(
    api, regular, create_course, mongo_db, invariants
):
    course = await create_course(status="archived")
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 409
    assert response.json()["code"] == "course_archived"
    assert "detail" in response.json()
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await invariants(course["id"]) == 0


async def test_archiving_keeps_enrollments_and_answers_a_repeat(
    api, admin, regular, create_course, invariants
):
    course = await create_course()
    first = await api.post(_enroll(course["id"]), headers=regular[1])
    await api.patch(_detail(course["id"]), json={"status": "archived"}, headers=admin[1])
    repeat = await api.post(_enroll(course["id"]), headers=regular[1])
    assert repeat.status_code == 200
    assert repeat.json() == first.json()
    mine = (await api.get("/api/enrollments/", headers=regular[1])).json()
    assert [e["id"] for e in mine["results"]] == [first.json()["id"]]
    detail = (await api.get(_detail(course["id"]), headers=admin[1])).json()
    assert detail["enrollers"] == 1
    assert [u["user_id"] for u in detail["enrolled_users"]] == [regular[0].id]
    assert await invariants(course["id"]) == 1


async def test_reopening_an_archived_course_takes_enrollments_again(
    api, admin, regular, create_course, invariants
):
    course = await create_course(status="archived")
    await api.patch(_detail(course["id"]), json={"status": "open"}, headers=admin[1])
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    assert await invariants(course["id"]) == 1


async def test_assignments_into_an_archived_course_are_409(
    api, admin, make_user, create_course, mongo_db, invariants
):
    course = await create_course(status="archived")
    user = await make_user()
    single = await api.post(
        f"{COURSES}{course['id']}/assign/", json={"user_id": user.id}, headers=admin[1]
    )
    bulk = await api.post(
        f"{COURSES}{course['id']}/assign-multiple/", json={"user_ids": [user.id]}, headers=admin[1]
    )
    for response in (single, bulk):
        assert response.status_code == 409
        assert response.json()["code"] == "course_archived"
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await invariants(course["id"]) == 0


@pytest.mark.parametrize(
    "window",
    [
        {"enrollment_opens_at": FUTURE},
        {"enrollment_closes_at": PAST},
        {"enrollment_opens_at": PAST, "enrollment_closes_at": "2001-01-01T00:00:00Z"},
    ],
)
async def test_self_enrollment_outside_the_window_is_409(
    api, regular, create_course, mongo_db, invariants, window
):
    course = await create_course(**window)
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 409
    assert response.json()["code"] == "enrollment_closed"
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await invariants(course["id"]) == 0


async def test_self_enrollment_inside_the_window_is_201(api, regular, create_course, invariants):
    course = await create_course(enrollment_opens_at=PAST, enrollment_closes_at=FUTURE)
    assert (await api.post(_enroll(course["id"]), headers=regular[1])).status_code == 201
    assert await invariants(course["id"]) == 1


async def test_the_window_closes_at_its_closing_time(api, regular, create_course, mongo_db):
    """[opens, closes): a window whose closing time has just been reached refuses."""
    course = await create_course()
    closes = datetime.now(UTC).replace(microsecond=0)
    await mongo_db.courses.update_one(
        {"_id": ObjectId(course["id"])}, {"$set": {"enrollment_closes_at": closes}}
    )
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.json()["code"] == "enrollment_closed"


async def test_admin_assignment_ignores_the_window(
    api, admin, make_user, create_course, invariants
):
    course = await create_course(enrollment_opens_at=FUTURE)
    users = [await make_user(), await make_user()]
    single = await api.post(
        f"{COURSES}{course['id']}/assign/", json={"user_id": users[0].id}, headers=admin[1]
    )
    assert single.status_code == 201
    bulk = await api.post(
        f"{COURSES}{course['id']}/assign-multiple/",
        json={"user_ids": [users[1].id]},
        headers=admin[1],
    )
    assert bulk.status_code == 200
    assert bulk.json()["summary"]["enrolled"] == 1
    assert await invariants(course["id"]) == 2


# The known-course cache is only a hint: the counting write decides


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"status": "archived"}, "course_archived"),
        ({"enrollment_opens_at": datetime(2999, 1, 1, tzinfo=UTC)}, "enrollment_closed"),
        ({"enrollment_closes_at": datetime(2000, 1, 1, tzinfo=UTC)}, "enrollment_closed"),
    ],
)
async def test_a_course_changed_by_another_process_takes_no_enrollment(
    api, regular, create_course, mongo_db, invariants, change, code
):
    """This process remembers the course as open; another worker changed it since (here:
    written directly). The counting write refuses, and the enrollment is taken back."""
    course = await create_course()  # remembered, open
    await mongo_db.courses.update_one({"_id": ObjectId(course["id"])}, {"$set": change})
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 409
    assert response.json()["code"] == code
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await invariants(course["id"]) == 0


async def test_a_course_reopened_by_another_process_takes_enrollments_again(
    api, admin, regular, create_course, mongo_db, invariants
):
    """This process remembers the course archived (its own PATCH); another worker reopened
    it since. The remembered refusal is re-checked, not trusted."""
    course = await create_course(enrollment_closes_at=FUTURE)
    change = {"status": "archived", "enrollment_closes_at": "2001-01-01T00:00:00Z"}
    await api.patch(_detail(course["id"]), json=change, headers=admin[1])
    await mongo_db.courses.update_one(
        {"_id": ObjectId(course["id"])},
        {"$set": {"status": "open", "enrollment_closes_at": None}},
    )
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 201
    assert await invariants(course["id"]) == 1


async def test_patch_updates_this_processs_memory_so_a_refusal_writes_nothing(
    api, admin, regular, create_course, command_log
):
    course = await create_course()
    await api.patch(_detail(course["id"]), json={"status": "archived"}, headers=admin[1])
    command_log.clear()
    response = await api.post(_enroll(course["id"]), headers=regular[1])
    assert response.status_code == 409
    writes = command_log.named("insert", "update", "findAndModify", "delete")
    assert writes == []


async def test_enroll_in_an_open_course_with_a_window_is_still_two_commands(
    api, regular, create_course, command_log
):
    course = await create_course(capacity=10, enrollment_opens_at=PAST, enrollment_closes_at=FUTURE)
    # A new client verifies the indexes once before its first enrollment write.
    warm_up = await create_course()
    assert (await api.post(_enroll(warm_up["id"]), headers=regular[1])).status_code == 201
    for expected_status in (201, 200):
        command_log.clear()
        response = await api.post(_enroll(course["id"]), headers=regular[1])
        assert response.status_code == expected_status
        commands = [(e.command_name, e.command[e.command_name]) for e in command_log]
        # The first time the guarded course update counts the member in (and takes the
        # seat); a repeat reads the course's ledger instead and writes nothing.
        second = "findAndModify" if expected_status == 201 else "find"
        assert commands == [("findAndModify", "enrollments"), (second, "courses")]


async def test_enrollments_racing_an_archive_keep_the_invariants(
    api, admin, create_course, make_user, auth_for, mongo_db, invariants
):
    """Enrollments in flight while another process archives the course: each one either
    counts (201) or is taken back (409); none is left uncounted or counted twice."""
    course = await create_course()
    users = await _enrolled_users(make_user, auth_for, 40)

    async def archive_elsewhere():
        await asyncio.sleep(0)
        # Another process: this one's memory still says "open".
        await mongo_db.courses.update_one(
            {"_id": ObjectId(course["id"])}, {"$set": {"status": "archived"}}
        )

    responses = await asyncio.gather(
        *(api.post(_enroll(course["id"]), headers=h) for _, h in users[:20]),
        archive_elsewhere(),
        *(api.post(_enroll(course["id"]), headers=h) for _, h in users[20:]),
    )
    statuses = [r.status_code for r in responses if r is not None]
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) == await invariants(course["id"], in_order=False)
    assert statuses.count(201) + statuses.count(409) == 40
