"""Assignment version 2: identifiers, due dates, CSV bodies, dry runs, stored reports."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

FUTURE = "2999-01-31T09:00:00Z"
LATER = "2999-06-30T17:00:00Z"


def _multiple(course_id: str, query: str = "") -> str:
    return f"/api/courses/{course_id}/assign-multiple/{query}"


async def _post_csv(api, admin, course_id: str, text: str | bytes, query: str = ""):
    body = text.encode() if isinstance(text, str) else text
    headers = {**admin[1], "Content-Type": "text/csv"}
    return await api.post(_multiple(course_id, query), content=body, headers=headers)


async def _nothing_written(mongo_db, course_id: str) -> None:
    course = await mongo_db.courses.find_one({"_id": ObjectId(course_id)})
    assert course["enrollers"] == 0
    assert course["enrolled_users"] == []
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await mongo_db.assignments.count_documents({}) == 0
    assert await mongo_db.assignment_results.count_documents({}) == 0


# Identifiers


async def test_usernames_resolve_as_login_compares_them(
    api, admin, make_user, create_course, invariants
):
    ada = await make_user(username="Ada")
    bob = await make_user(username="bob", is_active=False)
    course = await create_course()
    response = await api.post(
        _multiple(course["id"]),
        json={"usernames": ["ada", "nobody", "Bob", " \uff21\uff24\uff21 ", "NOBODY"]},
        headers=admin[1],
    )
    assert response.status_code == 200
    report = response.json()
    assert report["results"] == [
        {"user": "ada", "user_id": ada.id, "status": "enrolled"},
        {"user": "nobody", "user_id": None, "status": "not_found"},
        {"user": "Bob", "user_id": bob.id, "status": "inactive"},
    ]
    assert report["summary"] == {
        "requested": 5,
        "enrolled": 1,
        "already_enrolled": 0,
        "waitlisted": 0,
        "not_found": 1,
        "inactive": 1,
        "duplicates_in_request": 2,
    }
    assert await invariants(course["id"]) == 1


async def test_emails_resolve_case_insensitively(api, admin, make_user, create_course, mongo_db):
    ada = await make_user(email="Ada.Lovelace@Corp.example")
    course = await create_course()
    response = await api.post(
        _multiple(course["id"]),
        json={"emails": ["ada.lovelace@corp.EXAMPLE", "ghost@corp.example"]},
        headers=admin[1],
    )
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"user": "ada.lovelace@corp.EXAMPLE", "user_id": ada.id, "status": "enrolled"},
        {"user": "ghost@corp.example", "user_id": None, "status": "not_found"},
    ]
    stored = await mongo_db.enrollments.find_one({})
    assert (stored["user_id"], stored["username"], stored["source"]) == (
        ada.id,
        ada.username,
        "admin",
    )


async def test_emails_of_more_than_one_sql_chunk(api, admin, create_course, invariants):
    from tests.courses.test_assignment import _bulk_users

    ids = await _bulk_users(2100, prefix="chunk")
    course = await create_course()
    emails = [f"CHUNK{i}@corp.example" for i in range(2100)]
    report = (
        await api.post(_multiple(course["id"]), json={"emails": emails}, headers=admin[1])
    ).json()
    assert report["summary"]["enrolled"] == 2100
    assert [r["user_id"] for r in report["results"]] == ids
    assert await invariants(course["id"]) == 2100


@pytest.mark.parametrize(
    "body",
    [
        {"user_ids": [1], "emails": ["a@b.example"]},
        {"usernames": ["a"], "emails": ["a@b.example"]},
        {"due_at": FUTURE},
        {"emails": []},
        {"emails": "a@b.example"},
        {"emails": [""]},
        {"emails": ["   "]},
        {"emails": [7]},
        {"emails": [None]},
        {"usernames": ["x" * 151]},
        {"emails": ["x" * 255]},
        {"emails": ["a@b.example"], "dry_run": "true"},
        {"emails": ["a@b.example"], "override_capacity": 1},
        {"emails": ["a@b.example"], "due_at": "2020-01-01T00:00:00Z"},
        {"emails": ["a@b.example"], "due_at": "2999-01-01T00:00:00"},
        {"emails": ["a@b.example"], "due_at": "tomorrow"},
        {"emails": ["a@b.example"], "due_at": 1},
    ],
)
async def test_invalid_bodies_are_400_and_write_nothing(
    api, admin, make_user, create_course, mongo_db, body
):
    await make_user(username="a", email="a@b.example")
    course = await create_course()
    response = await api.post(_multiple(course["id"]), json=body, headers=admin[1])
    assert response.status_code == 400, response.text
    await _nothing_written(mongo_db, course["id"])


async def test_too_many_identifiers_is_400(api, admin, create_course, mongo_db, settings):
    settings.ASSIGN_MAX_USERS = 3
    course = await create_course()
    response = await api.post(
        _multiple(course["id"]), json={"usernames": ["a", "b", "c", "d"]}, headers=admin[1]
    )
    assert response.status_code == 400
    assert response.json() == {"usernames": ["At most 3 users per request."]}
    await _nothing_written(mongo_db, course["id"])


# Due dates


async def test_due_at_is_set_on_new_enrollments_and_moved_by_a_repeat(
    api, admin, make_user, create_course, mongo_db
):
    first, second = await make_user(), await make_user()
    course = await create_course()
    url = _multiple(course["id"])
    report = (
        await api.post(url, json={"user_ids": [first.id], "due_at": FUTURE}, headers=admin[1])
    ).json()
    assert report["results"] == [{"user_id": first.id, "status": "enrolled"}]
    stored = await mongo_db.enrollments.find_one({"user_id": first.id})
    assert stored["due_at"].replace(tzinfo=UTC) == datetime(2999, 1, 31, 9, tzinfo=UTC)

    # A repeat with a new deadline moves it; a user whose deadline is already that is false.
    moved = (
        await api.post(
            url, json={"user_ids": [first.id, second.id], "due_at": LATER}, headers=admin[1]
        )
    ).json()
    assert moved["results"] == [
        {"user_id": first.id, "status": "already_enrolled", "due_at_updated": True},
        {"user_id": second.id, "status": "enrolled"},
    ]
    same = (
        await api.post(url, json={"user_ids": [first.id], "due_at": LATER}, headers=admin[1])
    ).json()
    assert same["results"] == [
        {"user_id": first.id, "status": "already_enrolled", "due_at_updated": False}
    ]
    # A repeat without a deadline leaves it alone and says nothing about it.
    plain = (await api.post(url, json={"user_ids": [first.id]}, headers=admin[1])).json()
    assert plain["results"] == [{"user_id": first.id, "status": "already_enrolled"}]
    for user in (first, second):
        stored = await mongo_db.enrollments.find_one({"user_id": user.id})
        assert stored["due_at"].replace(tzinfo=UTC) == datetime(2999, 6, 30, 17, tzinfo=UTC)


async def test_single_assign_with_due_at(api, admin, regular, create_course, mongo_db):
    course = await create_course()
    url = f"/api/courses/{course['id']}/assign/"
    created = await api.post(
        url, json={"user_id": regular[0].id, "due_at": FUTURE}, headers=admin[1]
    )
    assert created.status_code == 201
    assert created.json()["due_at"] == "2999-01-31T09:00:00Z"
    moved = await api.post(url, json={"user_id": regular[0].id, "due_at": LATER}, headers=admin[1])
    assert moved.status_code == 200
    assert moved.json() == {**created.json(), "due_at": "2999-06-30T17:00:00Z"}
    again = await api.post(url, json={"user_id": regular[0].id}, headers=admin[1])
    assert again.json()["due_at"] == "2999-06-30T17:00:00Z"
    mine = (await api.get("/api/enrollments/", headers=regular[1])).json()["results"]
    assert mine[0]["due_at"] == "2999-06-30T17:00:00Z"


@pytest.mark.parametrize(
    "due_at", ["2020-01-01T00:00:00Z", "2999-01-01T00:00:00", "soon", None, 5, True]
)
async def test_single_assign_rejects_bad_due_at(
    api, admin, regular, create_course, invariants, due_at
):
    course = await create_course()
    body = {"user_id": regular[0].id, "due_at": due_at}
    response = await api.post(f"/api/courses/{course['id']}/assign/", json=body, headers=admin[1])
    if due_at is None:  # null: no deadline
        assert response.status_code == 201
        assert response.json()["due_at"] is None
        return
    assert response.status_code == 400
    assert "due_at" in response.json()
    assert await invariants(course["id"]) == 0


async def test_single_assign_override_capacity_must_be_boolean(
    api, admin, regular, create_course, invariants
):
    course = await create_course()
    url = f"/api/courses/{course['id']}/assign/"
    bad = await api.post(
        url, json={"user_id": regular[0].id, "override_capacity": "yes"}, headers=admin[1]
    )
    assert bad.status_code == 400
    assert await invariants(course["id"]) == 0
    good = await api.post(
        url, json={"user_id": regular[0].id, "override_capacity": True}, headers=admin[1]
    )
    assert good.status_code == 201


# CSV


async def test_hr_export_csv_with_bom_crlf_and_per_row_due_dates(
    api, admin, make_user, create_course, mongo_db, invariants
):
    ada = await make_user(email="ada@corp.example")
    bob = await make_user(email="bob@corp.example")
    course = await create_course()
    text = (
        "\ufeffName,Email,Department,due_at\r\n"
        f"Ada,ADA@corp.example,R&D,{FUTURE}\r\n"
        "\r\n"
        'Bob,bob@corp.example,"Sales, EMEA",\r\n'
        "Ghost,ghost@corp.example,,\r\n"
    )
    response = await _post_csv(api, admin, course["id"], text)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["results"] == [
        {"user": "ADA@corp.example", "user_id": ada.id, "status": "enrolled"},
        {"user": "bob@corp.example", "user_id": bob.id, "status": "enrolled"},
        {"user": "ghost@corp.example", "user_id": None, "status": "not_found"},
    ]
    assert report["summary"]["requested"] == 3
    due = {e["user_id"]: e["due_at"] async for e in mongo_db.enrollments.find({})}
    assert due[ada.id].replace(tzinfo=UTC) == datetime(2999, 1, 31, 9, tzinfo=UTC)
    assert due[bob.id] is None
    assert await invariants(course["id"]) == 2


async def test_csv_an_id_and_the_same_users_email_are_one_user(
    api, admin, make_user, create_course, invariants
):
    ada = await make_user(username="ada", email="ada@corp.example")
    course = await create_course()
    text = f"user_id,username,email\n{ada.id},,\n,,Ada@Corp.Example\n,ADA,\n"
    report = (await _post_csv(api, admin, course["id"], text)).json()
    assert report["results"] == [{"user": str(ada.id), "user_id": ada.id, "status": "enrolled"}]
    assert report["summary"]["duplicates_in_request"] == 2
    assert await invariants(course["id"]) == 1


async def test_csv_bad_rows_are_a_400_naming_them_and_nothing_is_written(
    api, admin, make_user, create_course, mongo_db
):
    await make_user(email="ok@corp.example")
    course = await create_course()
    text = (
        "user_id,email,due_at\n"
        ",ok@corp.example,\n"  # row 2: fine
        ",,\n"  # row 3: blank, skipped
        ", ,2999-01-01T00:00:00Z\n"  # row 4: empty identifier
        ",ok@corp.example,next week\n"  # row 5: bad date
        ",ok@corp.example,2020-01-01T00:00:00Z\n"  # row 6: past
        "7,ok@corp.example,\n"  # row 7: two identifiers
        "-3,,\n"  # row 8: not a positive integer
    )
    response = await _post_csv(api, admin, course["id"], text)
    assert response.status_code == 400
    assert response.json() == {
        "csv": [
            "Row 4: empty identifier.",
            "Row 5: due_at: Expected an ISO 8601 time such as 2026-01-31T09:00:00Z.",
            "Row 6: due_at: Must be in the future.",
            "Row 7: give one identifier per row, not user_id and email",
            "Row 8: user_id is not a positive integer.",
        ]
    }
    await _nothing_written(mongo_db, course["id"])


async def test_csv_names_at_most_20_bad_rows(api, admin, create_course, mongo_db):
    course = await create_course()
    text = "email,due_at\n" + "x@corp.example,never\n" * 25
    response = await _post_csv(api, admin, course["id"], text)
    assert response.status_code == 400
    errors = response.json()["csv"]
    assert len(errors) == 21
    assert errors[0].startswith("Row 2: ")
    assert errors[19].startswith("Row 21: ")
    assert errors[20] == "... and 5 more bad rows."
    await _nothing_written(mongo_db, course["id"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "header row"),
        (b"\r\n\r\n", "header row"),
        (b"name,department\nAda,R&D\n", "identifier column"),
        (b"email,Email\na@b.example,a@b.example\n", "appears twice"),
        (b"email\n", "no rows"),
        (b"email\n\n,\n", "no rows"),
        (b"email\n\xff\xfe@corp.example\n", "not UTF-8"),
        (b'email\n"unterminated@corp.example\n', "CSV parse error"),
        (b'email\n"a"b@corp.example\n', "CSV parse error"),
    ],
)
async def test_csv_malformed_bodies_are_400(api, admin, create_course, mongo_db, body, expected):
    course = await create_course()
    response = await _post_csv(api, admin, course["id"], body)
    assert response.status_code == 400
    assert expected in response.text
    await _nothing_written(mongo_db, course["id"])


async def test_csv_over_the_maximum_is_400(api, admin, create_course, mongo_db, settings):
    settings.ASSIGN_MAX_USERS = 2
    course = await create_course()
    response = await _post_csv(api, admin, course["id"], "username\na\nb\nc\n")
    assert response.status_code == 400
    assert response.json() == {"csv": ["At most 2 users per request."]}
    await _nothing_written(mongo_db, course["id"])


async def test_other_media_types_are_415(api, admin, create_course, mongo_db):
    course = await create_course()
    response = await api.post(
        _multiple(course["id"]),
        content=b"email\na@b.example\n",
        headers={**admin[1], "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    await _nothing_written(mongo_db, course["id"])


@pytest.mark.parametrize("query", ["?dry_run=maybe", "?override_capacity=2"])
async def test_bad_query_flags_are_400(api, admin, regular, create_course, mongo_db, query):
    course = await create_course()
    csv = await _post_csv(api, admin, course["id"], f"user_id\n{regular[0].id}\n", query)
    assert csv.status_code == 400
    body = {"user_ids": [regular[0].id]}
    json = await api.post(_multiple(course["id"], query), json=body, headers=admin[1])
    assert json.status_code == 400
    await _nothing_written(mongo_db, course["id"])


# Dry run


async def test_dry_run_reports_what_the_assignment_would_do_and_writes_nothing(
    api, admin, make_user, create_course, mongo_db, caplog
):
    enrolled, fresh = await make_user(), await make_user()
    inactive = await make_user(is_active=False)
    course = await create_course()
    await api.post(
        f"/api/courses/{course['id']}/assign/", json={"user_id": enrolled.id}, headers=admin[1]
    )
    before = await mongo_db.courses.find_one({"_id": ObjectId(course["id"])})
    enrollments_before = await mongo_db.enrollments.find({}).to_list(None)
    emails = [enrolled.email, fresh.email, inactive.email, "ghost@corp.example", fresh.email]
    body = {"emails": emails, "due_at": FUTURE}
    caplog.set_level(logging.INFO, logger="courses.audit")
    caplog.clear()

    dry = await api.post(_multiple(course["id"]), json={**body, "dry_run": True}, headers=admin[1])

    assert dry.status_code == 200
    assert not [r for r in caplog.records if r.name == "courses.audit"]
    assert await mongo_db.courses.find_one({"_id": ObjectId(course["id"])}) == before
    assert await mongo_db.enrollments.find({}).to_list(None) == enrollments_before
    assert await mongo_db.assignments.count_documents({}) == 0
    assert await mongo_db.assignment_results.count_documents({}) == 0
    preview = dry.json()
    assert (preview.pop("id"), preview.pop("dry_run")) == (None, True)
    real = (await api.post(_multiple(course["id"]), json=body, headers=admin[1])).json()
    assert (real.pop("dry_run"), len(real.pop("id"))) == (False, 24)
    assert preview == real
    assert real["enrollers"] == 2
    assert real["results"][0] == {
        "user": enrolled.email,
        "user_id": enrolled.id,
        "status": "already_enrolled",
        "due_at_updated": True,
    }


async def test_dry_run_with_csv_query_flag(api, admin, regular, create_course, mongo_db):
    course = await create_course()
    response = await _post_csv(
        api, admin, course["id"], f"user_id,due_at\n{regular[0].id},{FUTURE}\n", "?dry_run=true"
    )
    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert response.json()["summary"]["enrolled"] == 1
    assert response.json()["enrollers"] == 1
    await _nothing_written(mongo_db, course["id"])


async def test_dry_run_into_an_archived_course_is_409(api, admin, regular, create_course, mongo_db):
    course = await create_course(status="archived")
    body = {"user_ids": [regular[0].id], "dry_run": True}
    response = await api.post(_multiple(course["id"]), json=body, headers=admin[1])
    assert response.status_code == 409
    assert response.json()["code"] == "course_archived"
    await _nothing_written(mongo_db, course["id"])


# Stored reports


async def test_reports_are_stored_listed_newest_first_and_fetched(
    api, admin, make_user, create_course, caplog
):
    users = [await make_user() for _ in range(3)]
    first, second = await create_course(), await create_course()
    caplog.set_level(logging.INFO, logger="courses.audit")
    reports = []
    for course, ids in (
        (first, [users[0].id]),
        (second, [users[1].id]),
        (first, [u.id for u in users]),
    ):
        body = {"user_ids": ids, "due_at": FUTURE}
        reports.append(
            (await api.post(_multiple(course["id"]), json=body, headers=admin[1])).json()
        )
    assert len([r for r in caplog.records if r.name == "courses.audit"]) == 3

    listed = await api.get("/api/assignments/", headers=admin[1])
    assert listed.status_code == 200
    page = listed.json()
    assert page["count"] == 3
    assert [a["id"] for a in page["results"]] == [r["id"] for r in reversed(reports)]
    newest = page["results"][0]
    assert set(newest) == {"id", "course_id", "assigned_by", "created_at", "summary"}
    assert newest["course_id"] == first["id"]
    assert newest["assigned_by"] == admin[0].id
    assert newest["summary"] == reports[2]["summary"]

    by_course = (
        await api.get(
            "/api/assignments/", params={"course_id": first["id"], "limit": 1}, headers=admin[1]
        )
    ).json()
    assert by_course["count"] == 2
    assert [a["id"] for a in by_course["results"]] == [reports[2]["id"]]
    assert "offset=1" in by_course["next"]

    detail = await api.get(f"/api/assignments/{reports[2]['id']}/", headers=admin[1])
    assert detail.status_code == 200
    full = detail.json()
    assert full == {
        **reports[2],
        "assigned_by": admin[0].id,
        "created_at": newest["created_at"],
        "due_at": FUTURE,
        "override_capacity": False,
    }


async def test_stored_results_are_chunked_and_read_back_in_order(
    api, admin, make_user, create_course, mongo_db, monkeypatch
):
    from courses import assignment_repository

    monkeypatch.setattr(assignment_repository, "ASSIGNMENT_RESULTS_CHUNK", 2)
    users = [await make_user() for _ in range(5)]
    course = await create_course()
    usernames = [u.username for u in users]
    report = (
        await api.post(_multiple(course["id"]), json={"usernames": usernames}, headers=admin[1])
    ).json()
    chunks = await mongo_db.assignment_results.find({}).sort("seq", 1).to_list(None)
    assert [len(c["results"]) for c in chunks] == [2, 2, 1]
    head = await mongo_db.assignments.find_one({})
    assert "results" not in head
    detail = (await api.get(f"/api/assignments/{report['id']}/", headers=admin[1])).json()
    assert detail["results"] == report["results"]


async def test_unknown_report_is_404_and_bad_course_filter_is_400(api, admin, create_course):
    course = await create_course()
    missing = await api.get(f"/api/assignments/{course['id']}/", headers=admin[1])
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Assignment not found.", "code": "not_found"}
    assert (await api.get("/api/assignments/not-an-id/", headers=admin[1])).status_code == 404
    bad = await api.get("/api/assignments/", params={"course_id": "xyz"}, headers=admin[1])
    assert bad.status_code == 400
    assert "course_id" in bad.json()
    empty = await api.get("/api/assignments/", params={"course_id": "f" * 24}, headers=admin[1])
    assert empty.json()["count"] == 0


@pytest.mark.parametrize("role", ["anonymous", "regular", "staff", "superuser"])
async def test_stored_reports_are_for_admins(
    api, admin, regular, create_course, role_headers, role
):
    course = await create_course()
    report = (
        await api.post(
            _multiple(course["id"]), json={"user_ids": [regular[0].id]}, headers=admin[1]
        )
    ).json()
    headers = await role_headers(role)
    for path in ("/api/assignments/", f"/api/assignments/{report['id']}/"):
        response = await api.get(path, headers=headers)
        expected = {"anonymous": 401, "regular": 403}.get(role, 200)
        assert response.status_code == expected, (path, role)


async def test_idempotent_retry_replays_the_same_stored_report(
    api, admin, regular, create_course, mongo_db
):
    course = await create_course()
    headers = {**admin[1], "Idempotency-Key": "hr-import-2999-01"}
    body = {"emails": [regular[0].email], "due_at": FUTURE}
    first = await api.post(_multiple(course["id"]), json=body, headers=headers)
    retry = await api.post(_multiple(course["id"]), json=body, headers=headers)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert await mongo_db.assignments.count_documents({}) == 1


async def test_a_crashed_keyed_attempts_stored_report_stands(
    api, admin, regular, create_course, mongo_db, settings
):
    """The first attempt stored its report and crashed before its answer was kept: the
    retry (after the lease) finds the report under the same id and answers it."""
    course = await create_course()
    headers = {**admin[1], "Idempotency-Key": "crashy"}
    body = {"user_ids": [regular[0].id]}
    first = (await api.post(_multiple(course["id"]), json=body, headers=headers)).json()
    # Forget the stored answer, as if the first attempt died before storing it, lease over.
    await mongo_db.idempotency_keys.update_many(
        {},
        {
            "$set": {
                "state": "in_progress",
                "lease_expires_at": datetime.now(UTC) - timedelta(seconds=1),
            },
            "$unset": {"status": "", "body": ""},
        },
    )
    retry = await api.post(_multiple(course["id"]), json=body, headers=headers)
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers
    assert retry.json() == first
    assert await mongo_db.assignments.count_documents({}) == 1
