import pytest

COURSES = "/api/courses/"
COURSE_KEYS = {
    "id",
    "course_title",
    "course_description",
    "display_price",
    "enrollers",
    "created_at",
    "capacity",
    "seats_left",
    "enrollment_opens_at",
    "enrollment_closes_at",
    "status",
    "updated_at",
}
VALID = {
    "course_title": "Secure Coding",
    "course_description": "OWASP top ten.",
    "display_price": {"amount": "49.99", "currency": "USD"},
}


async def test_admin_creates_course(api, admin, mongo_db):
    response = await api.post(COURSES, json=VALID, headers=admin[1])
    assert response.status_code == 201
    course = response.json()
    assert set(course) == COURSE_KEYS
    assert len(course["id"]) == 24
    assert course["id"] == course["id"].lower()
    assert course["display_price"] == {"amount": "49.99", "currency": "USD"}
    assert course["enrollers"] == 0
    assert course["created_at"].endswith("Z")
    stored = await mongo_db.courses.find_one({})
    assert str(stored["display_price"]["amount"]) == "49.99"
    assert type(stored["display_price"]["amount"]).__name__ == "Decimal128"
    assert stored["enrolled_users"] == []
    assert stored["enrollers"] == 0


async def test_amounts_are_rendered_with_two_places(api, admin):
    for sent, shown in (("10", "10.00"), (5, "5.00"), ("0.5", "0.50"), (19.99, "19.99")):
        body = {**VALID, "display_price": {"amount": sent, "currency": "EUR"}}
        response = await api.post(COURSES, json=body, headers=admin[1])
        assert response.status_code == 201, sent
        assert response.json()["display_price"]["amount"] == shown


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"course_title": None}, "course_title"),
        ({"course_title": ""}, "course_title"),
        ({"course_title": "x" * 201}, "course_title"),
        ({"course_title": ["x"]}, "course_title"),
        ({"course_description": "x" * 10_001}, "course_description"),
        ({"display_price": {"amount": "-1.00", "currency": "USD"}}, "display_price"),
        ({"display_price": {"amount": "1.999", "currency": "USD"}}, "display_price"),
        ({"display_price": {"amount": "abc", "currency": "USD"}}, "display_price"),
        ({"display_price": {"amount": "NaN", "currency": "USD"}}, "display_price"),
        ({"display_price": {"amount": "1e400", "currency": "USD"}}, "display_price"),
        ({"display_price": {"amount": "1.00", "currency": "XYZ"}}, "display_price"),
        ({"display_price": {"amount": "1.00", "currency": "usd"}}, "display_price"),
        ({"display_price": {"amount": "1.00"}}, "display_price"),
        ({"display_price": "49.99"}, "display_price"),
        ({"display_price": {"amount": "1.00", "currency": "USD", "x": 1}}, "display_price"),
        ({"enrollers": 5}, "enrollers"),
    ],
)
async def test_course_validation(api, admin, mongo_db, change, field):
    body = {**VALID, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await api.post(COURSES, json=body, headers=admin[1])
    assert response.status_code == 400
    assert field in response.json()
    assert await mongo_db.courses.count_documents({}) == 0


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 401),
        ("regular", 403),
        ("inactive_staff", 403),
        ("staff", 201),
        ("superuser", 201),
    ],
)
async def test_create_course_permissions(api, role_headers, mongo_db, role, expected):
    response = await api.post(COURSES, json=VALID, headers=await role_headers(role))
    assert response.status_code == expected
    assert await mongo_db.courses.count_documents({}) == (1 if expected == 201 else 0)


async def test_list_is_newest_first_paginated_and_never_loads_enrolled_users(
    api, regular, create_course
):
    created = [await create_course(course_title=f"Course {n}") for n in range(23)]
    response = await api.get(COURSES, headers=regular[1])
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 23
    assert [c["id"] for c in page["results"]] == [c["id"] for c in reversed(created)][:20]
    assert all(set(c) == COURSE_KEYS for c in page["results"])
    assert page["previous"] is None
    assert "offset=20" in page["next"]
    rest = (await api.get(COURSES, params={"offset": 20}, headers=regular[1])).json()
    assert [c["course_title"] for c in rest["results"]] == ["Course 2", "Course 1", "Course 0"]
    assert rest["next"] is None
    assert rest["previous"] is not None
    small = (await api.get(COURSES, params={"limit": 5, "offset": 5}, headers=regular[1])).json()
    assert len(small["results"]) == 5


async def test_list_requires_authentication(api):
    assert (await api.get(COURSES)).status_code == 401


async def test_detail_shows_enrolled_users_to_admins_only(api, admin, regular, create_course):
    course = await create_course()
    await api.post(f"{COURSES}{course['id']}/enroll/", headers=regular[1])
    as_user = (await api.get(f"{COURSES}{course['id']}/", headers=regular[1])).json()
    assert set(as_user) == COURSE_KEYS
    assert as_user["enrollers"] == 1
    as_admin = (await api.get(f"{COURSES}{course['id']}/", headers=admin[1])).json()
    assert as_admin["enrolled_users"] == [{"user_id": regular[0].id, "username": "alice"}]


@pytest.mark.parametrize(
    "course_id", ["0123456789abcdef01234567", "not-an-id", "zzzzzzzzzzzzzzzzzzzzzzzz", "12345"]
)
async def test_unknown_or_invalid_course_is_404(api, regular, mongo_db, course_id):
    for method, suffix in (("get", ""), ("post", "enroll/")):
        response = await getattr(api, method)(f"{COURSES}{course_id}/{suffix}", headers=regular[1])
        assert response.status_code == 404
        assert response.json()["detail"]
    assert await mongo_db.enrollments.count_documents({}) == 0
