"""Structured logs: JSON with the request id on every line, no secrets, an audit trail."""

import io
import json
import logging

import pytest

from asgi_app.logging import JsonFormatter, RequestIdFilter

SECRET_PASSWORD = "Zebra-Quartz-71-Never-Log-Me"


@pytest.fixture
def json_log():
    """The root logger's output as the production handler writes it (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


async def test_passwords_and_tokens_never_appear_in_logs(api, json_log, caplog, settings):
    caplog.set_level(logging.DEBUG)
    settings.DEBUG = False
    register = await api.post(
        "/api/auth/register/",
        json={"username": "logme", "email": "logme@example.com", "password": SECRET_PASSWORD},
    )
    assert register.status_code == 201
    tokens = register.json()
    await api.post("/api/auth/login/", json={"username": "logme", "password": SECRET_PASSWORD})
    await api.post(
        "/api/auth/login/", json={"username": "logme", "password": SECRET_PASSWORD + "x"}
    )
    weak = await api.post(
        "/api/auth/register/",
        json={"username": "weak", "email": "weak@example.com", "password": "password"},
    )
    assert weak.status_code == 400
    await api.post("/api/auth/refresh/", json={"refresh": tokens["refresh"]})
    await api.get("/api/auth/me/", headers={"Authorization": f"Bearer {tokens['access']}"})
    logged = json_log.getvalue() + caplog.text
    assert logged, "the requests should have logged something"
    for secret in (SECRET_PASSWORD, tokens["access"], tokens["refresh"], '"password"'):
        assert secret not in logged


async def test_every_log_line_of_a_request_carries_its_request_id(
    api, json_log, admin, make_user, create_course
):
    course = await create_course()
    users = [await make_user() for _ in range(2)]
    response = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/",
        json={"user_ids": [u.id for u in users]},
        headers={**admin[1], "X-Request-ID": "req-audit-1"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-audit-1"
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    audit = [line for line in lines if line["logger"] == "courses.audit"]
    assert audit, lines
    assert all(line["request_id"] == "req-audit-1" for line in audit)
    for line in lines:
        assert {"time", "level", "logger", "request_id", "message"} <= set(line)


async def test_admin_assignments_are_audited(api, admin, make_user, create_course, caplog):
    caplog.set_level(logging.INFO, logger="courses.audit")
    course = await create_course()
    alice, inactive = await make_user(), await make_user(is_active=False)
    response = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/",
        json={"user_ids": [alice.id, inactive.id, 999_999, alice.id]},
        headers=admin[1],
    )
    assert response.status_code == 200
    single = await api.post(
        f"/api/courses/{course['id']}/assign/", json={"user_id": alice.id}, headers=admin[1]
    )
    assert single.status_code == 200
    records = [r for r in caplog.records if r.name == "courses.audit"]
    assert len(records) == 2
    bulk, one = records
    assert bulk.admin_id == admin[0].id
    assert bulk.course_id == course["id"]
    assert (bulk.enrolled, bulk.inactive, bulk.not_found, bulk.already_enrolled) == (1, 1, 1, 0)
    assert bulk.duplicates_in_request == 1
    assert (one.admin_id, one.course_id, one.already_enrolled) == (admin[0].id, course["id"], 1)
    # Refused attempts write no audit line.
    caplog.clear()
    refused = await api.post(
        f"/api/courses/{course['id']}/assign-multiple/", json={"user_ids": []}, headers=admin[1]
    )
    assert refused.status_code == 400
    assert not [r for r in caplog.records if r.name == "courses.audit"]
