"""Idempotency-Key (API.md "Idempotency-Key"): replay, reuse, in progress, races, leases."""

import asyncio
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from bson import ObjectId
from django.test import RequestFactory
from rest_framework.request import Request

from courses import idempotency, services
from mongo.client import get_db

COURSE_BODY = {
    "course_title": "Onboarding",
    "course_description": "Required for all new hires.",
    "display_price": {"amount": "49.99", "currency": "USD"},
}
REPLAYED = "idempotent-replayed"


def _enroll(course_id: str) -> str:
    return f"/api/courses/{course_id}/enroll/"


def _keyed(headers: dict, key: str) -> dict:
    return {**headers, "Idempotency-Key": key}


def _fingerprint(method: str, path: str, body: dict | None = None) -> str:
    """What the server computes for this request (as httpx sends it)."""
    data = orjson.dumps(body) if body is not None else b""
    django_request = RequestFactory().generic(method, path, data, "application/json")
    return idempotency.request_fingerprint(Request(django_request))


async def _records(mongo_db) -> list[dict]:
    return await mongo_db.idempotency_keys.find().to_list(None)


# Replays


async def test_a_retried_enroll_replays_the_first_answer_exactly(
    api, regular, create_course, mongo_db, invariants
):
    course = await create_course()
    headers = _keyed(regular[1], "enroll-1")
    first = await api.post(_enroll(course["id"]), headers=headers)
    retry = await api.post(_enroll(course["id"]), headers=headers)
    assert first.status_code == 201
    assert REPLAYED not in first.headers
    # The stored answer, not a fresh run (which would be a 200 "already enrolled").
    assert retry.status_code == 201
    assert retry.headers[REPLAYED] == "true"
    assert retry.headers["content-type"] == "application/json"
    assert retry.content == first.content
    assert await invariants(course["id"]) == 1


async def test_a_retried_course_create_replays_and_creates_one_course(api, admin, mongo_db):
    headers = _keyed(admin[1], "create-1")
    first = await api.post("/api/courses/", json=COURSE_BODY, headers=headers)
    retry = await api.post("/api/courses/", json=COURSE_BODY, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert await mongo_db.courses.count_documents({}) == 1


async def test_assign_and_assign_multiple_replay(api, admin, make_user, create_course, mongo_db):
    course = await create_course()
    hire = await make_user()
    for url, body in (
        (f"/api/courses/{course['id']}/assign/", {"user_id": hire.id}),
        (f"/api/courses/{course['id']}/assign-multiple/", {"user_ids": [hire.id]}),
    ):
        headers = _keyed(admin[1], f"key-{url}")
        first = await api.post(url, json=body, headers=headers)
        retry = await api.post(url, json=body, headers=headers)
        assert first.status_code in (200, 201)
        assert (retry.status_code, retry.content) == (first.status_code, first.content)
        assert retry.headers[REPLAYED] == "true"
    assert await mongo_db.enrollments.count_documents({}) == 1


async def test_the_same_json_spelled_differently_is_the_same_request(api, admin, mongo_db):
    headers = _keyed(admin[1], "spelling")
    first = await api.post("/api/courses/", json=COURSE_BODY, headers=headers)
    respelled = (
        b'{ "display_price": {"currency": "USD", "amount": "49.99"},\n'
        b'  "course_description": "Required for all new hires.", "course_title": "Onboarding" }'
    )
    retry = await api.post(
        "/api/courses/",
        content=respelled,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert await mongo_db.courses.count_documents({}) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [({"user_id": "seven"}, 400), ({"user_id": 10**9}, 400)],
    ids=["not-an-integer", "unknown-user"],
)
async def test_answers_that_reflect_the_request_are_stored_and_replayed(
    api, admin, create_course, mongo_db, body, status
):
    course = await create_course()
    headers = _keyed(admin[1], "bad-request")
    url = f"/api/courses/{course['id']}/assign/"
    first = await api.post(url, json=body, headers=headers)
    retry = await api.post(url, json=body, headers=headers)
    assert first.status_code == retry.status_code == status
    assert retry.content == first.content
    assert retry.headers[REPLAYED] == "true"
    assert [r["status"] for r in await _records(mongo_db)] == [status]
    assert await mongo_db.enrollments.count_documents({}) == 0


async def test_a_404_for_an_unknown_course_is_replayed(api, regular, mongo_db):
    url = _enroll(str(ObjectId()))
    headers = _keyed(regular[1], "nowhere")
    first = await api.post(url, headers=headers)
    retry = await api.post(url, headers=headers)
    assert first.status_code == retry.status_code == 404
    assert retry.headers[REPLAYED] == "true"
    assert await mongo_db.enrollments.count_documents({}) == 0


@pytest.mark.parametrize(
    ("status", "stored"),
    [
        (200, True),
        (201, True),
        (400, True),
        (404, True),
        (409, True),
        (422, True),
        (401, False),
        (403, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
async def test_which_answers_are_stored(mongo_db, status, stored):
    # given a claimed key
    claim = await idempotency.idempotency_claim(user_id=7, key="k", fingerprint="f")
    assert isinstance(claim, idempotency.Claim)
    # when the request ends with `status`
    await idempotency.idempotency_complete(
        claim=claim, status=status, body=b"{}", content_type="application/json"
    )
    # then it is kept for replay, or the claim is released so a retry runs for real
    records = await _records(mongo_db)
    if stored:
        assert [(r["state"], r["status"], r["body"]) for r in records] == [("done", status, b"{}")]
        again = await idempotency.idempotency_claim(user_id=7, key="k", fingerprint="f")
        assert again == idempotency.StoredAnswer(status, b"{}", "application/json")
    else:
        assert records == []
        again = await idempotency.idempotency_claim(user_id=7, key="k", fingerprint="f")
        assert isinstance(again, idempotency.Claim)


async def test_without_the_header_nothing_is_recorded(api, regular, create_course, mongo_db):
    course = await create_course()
    first = await api.post(_enroll(course["id"]), headers=regular[1])
    again = await api.post(_enroll(course["id"]), headers=regular[1])
    assert (first.status_code, again.status_code) == (201, 200)
    assert REPLAYED not in again.headers
    assert await _records(mongo_db) == []


# Invalid keys, reuse, in progress


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there", "del\x7f"],
    ids=["empty", "256-chars", "non-ascii", "control", "delete"],
)
async def test_an_invalid_key_is_a_400_and_nothing_is_written(
    api, regular, create_course, mongo_db, key
):
    course = await create_course()
    response = await api.post(
        _enroll(course["id"]),
        headers=[*regular[1].items(), ("Idempotency-Key", key.encode("latin-1"))],
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Idempotency-Key must be 1 to 255 printable ASCII characters.",
        "code": "invalid_idempotency_key",
    }
    assert await mongo_db.enrollments.count_documents({}) == 0
    assert await _records(mongo_db) == []


@pytest.mark.parametrize("key", ["a", "~" * 255, 'quoted "key" with spaces'])
async def test_keys_of_1_to_255_printable_characters_are_accepted(api, regular, create_course, key):
    course = await create_course()
    response = await api.post(_enroll(course["id"]), headers=_keyed(regular[1], key))
    assert response.status_code == 201


async def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(
    api, admin, make_user, create_course, mongo_db
):
    course = await create_course()
    first_hire, second_hire = await make_user(), await make_user()
    headers = _keyed(admin[1], "reused")
    url = f"/api/courses/{course['id']}/assign/"
    assert (await api.post(url, json={"user_id": first_hire.id}, headers=headers)).status_code
    reused = await api.post(url, json={"user_id": second_hire.id}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert set(reused.json()) == {"detail", "code"}
    assert REPLAYED not in reused.headers
    assert await mongo_db.enrollments.find_one({"user_id": second_hire.id}) is None


async def test_the_same_key_on_another_path_is_a_422(api, regular, create_course, mongo_db):
    """The scope is caller + key; the path is part of the request compared, as at Stripe."""
    first_course, second_course = await create_course(), await create_course()
    headers = _keyed(regular[1], "one-operation")
    assert (await api.post(_enroll(first_course["id"]), headers=headers)).status_code == 201
    other = await api.post(_enroll(second_course["id"]), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await mongo_db.enrollments.count_documents({}) == 1


async def test_another_caller_with_the_same_key_runs_separately(
    api, regular, make_user, auth_for, create_course, invariants
):
    course = await create_course()
    other = await auth_for(await make_user())
    alice = await api.post(_enroll(course["id"]), headers=_keyed(regular[1], "shared"))
    bob = await api.post(_enroll(course["id"]), headers=_keyed(other, "shared"))
    assert alice.status_code == bob.status_code == 201
    assert REPLAYED not in bob.headers
    assert alice.json()["user_id"] != bob.json()["user_id"]
    assert await invariants(course["id"]) == 2


async def test_a_retry_while_the_first_runs_is_a_409_and_writes_nothing(
    api, regular, create_course, mongo_db
):
    # given a first attempt that holds the key (claimed through the same service)
    user, headers = regular
    course = await create_course()
    url = _enroll(course["id"])
    await idempotency.idempotency_claim(
        user_id=user.id, key="busy", fingerprint=_fingerprint("POST", url)
    )
    # when the client retries
    retry = await api.post(url, headers=_keyed(headers, "busy"))
    # then
    assert retry.status_code == 409
    assert retry.json() == {
        "detail": "A request with this Idempotency-Key is still being processed; retry shortly.",
        "code": "idempotency_key_in_progress",
    }
    assert await mongo_db.enrollments.count_documents({}) == 0


# Crash recovery


async def test_an_enroll_that_crashed_before_storing_its_answer_runs_again_after_the_lease(
    api, regular, create_course, mongo_db, settings, invariants
):
    # given a first attempt that claimed the key with a tiny lease, enrolled, and crashed
    settings.IDEMPOTENCY_LEASE_SECONDS = 0
    user, headers = regular
    course = await create_course()
    url = _enroll(course["id"])
    await idempotency.idempotency_claim(
        user_id=user.id, key="crash", fingerprint=_fingerprint("POST", url)
    )
    await services.enrollment_create(course_id=course["id"], user_id=user.id, username="alice")
    # when the client retries after the lease
    settings.IDEMPOTENCY_LEASE_SECONDS = 60
    retry = await api.post(url, headers=_keyed(headers, "crash"))
    again = await api.post(url, headers=_keyed(headers, "crash"))
    # then the retry ran (the enrollment exists: 200), was stored, and nothing doubled
    assert retry.status_code == 200
    assert REPLAYED not in retry.headers
    assert (again.status_code, again.headers[REPLAYED]) == (200, "true")
    assert await invariants(course["id"]) == 1
    assert [r["state"] for r in await _records(mongo_db)] == ["done"]


async def test_a_course_create_that_crashed_converges_on_the_same_course(
    api, admin, mongo_db, settings
):
    # given a first attempt that claimed the key, created the course, and crashed
    settings.IDEMPOTENCY_LEASE_SECONDS = 0
    user, headers = admin
    claim = await idempotency.idempotency_claim(
        user_id=user.id,
        key="create",
        fingerprint=_fingerprint("POST", "/api/courses/", COURSE_BODY),
    )

    class Crashed:  # the request object of the attempt that crashed
        idempotency_claim = claim

    crashed = await services.course_create(
        course_title=COURSE_BODY["course_title"],
        course_description=COURSE_BODY["course_description"],
        amount=Decimal("49.99"),
        currency="USD",
        course_id=idempotency.idempotent_object_id(Crashed),
    )
    # when the client retries after the lease
    retry = await api.post("/api/courses/", json=COURSE_BODY, headers=_keyed(headers, "create"))
    # then it answers with the course the first attempt created, and there is only that one
    assert retry.status_code == 201
    assert retry.json()["id"] == crashed.id
    assert await mongo_db.courses.count_documents({}) == 1


async def test_a_key_past_its_24_hours_is_free_again(api, admin, mongo_db, settings):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 0  # stored already expired (TTL monitor not run)
    headers = _keyed(admin[1], "old")
    first = await api.post("/api/courses/", json=COURSE_BODY, headers=headers)
    other = await api.post(
        "/api/courses/", json={**COURSE_BODY, "course_title": "Other"}, headers=headers
    )
    assert first.status_code == other.status_code == 201
    assert REPLAYED not in other.headers
    assert await mongo_db.courses.count_documents({}) == 2


async def test_records_expire_24_hours_after_the_first_request_through_a_ttl_index(
    api, regular, create_course, mongo_db
):
    indexes = await mongo_db.idempotency_keys.index_information()
    assert indexes["expires_at_ttl"]["key"] == [("expires_at", 1)]
    assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0
    course = await create_course()
    await api.post(_enroll(course["id"]), headers=_keyed(regular[1], "ttl"))
    (record,) = await _records(mongo_db)
    assert record["_id"] == {"user_id": regular[0].id, "key": "ttl"}
    assert record["expires_at"] - record["created_at"] == timedelta(hours=24)


# Races


@pytest.mark.parametrize("concurrency", [2, 8])
async def test_identical_requests_at_once_execute_once(
    api, regular, create_course, mongo_db, command_log, concurrency
):
    """Many rounds of N identical enrolls with one key at the same time: exactly one runs;
    every other gets the replay or a 409, never a second execution."""
    course = await create_course()
    url = _enroll(course["id"])
    enrollments = get_db().enrollments  # command_log started a new client
    for round_number in range(10):
        await enrollments.delete_many({})
        command_log.clear()
        headers = _keyed(regular[1], f"race-{concurrency}-{round_number}")
        responses = await asyncio.gather(
            *(api.post(url, headers=headers) for _ in range(concurrency))
        )
        executed = [r for r in responses if REPLAYED not in r.headers and r.status_code != 409]
        assert [r.status_code for r in executed] == [201]
        for response in responses:
            if response.headers.get(REPLAYED) == "true":
                assert (response.status_code, response.content) == (201, executed[0].content)
            elif response is not executed[0]:
                assert response.json()["code"] == "idempotency_key_in_progress"
        enrollment_writes = [
            e
            for e in command_log.named("findAndModify")
            if e.command["findAndModify"] == "enrollments"
        ]
        assert len(enrollment_writes) == 1
        assert await enrollments.count_documents({}) == 1


async def test_identical_course_creates_at_once_create_one_course(api, admin, mongo_db):
    for round_number in range(10):
        headers = _keyed(admin[1], f"create-race-{round_number}")
        responses = await asyncio.gather(
            *(api.post("/api/courses/", json=COURSE_BODY, headers=headers) for _ in range(4))
        )
        executed = [r for r in responses if REPLAYED not in r.headers and r.status_code != 409]
        assert [r.status_code for r in executed] == [201]
        assert await mongo_db.courses.count_documents({}) == round_number + 1
