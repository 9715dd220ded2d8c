"""The SQL database unreachable: account endpoints answer 503, token enrollment keeps working."""

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from bson import Decimal128, ObjectId
from pymongo import MongoClient

from tests.conftest import timed
from tests.reliability.conftest import processes
from tests.reliability.servers import UvicornServer, bearer, mint_access, server_env


@pytest.fixture
def sql_down_server(standin_uri):
    database = f"sqldown_{uuid.uuid4().hex[:8]}"
    course_id = ObjectId()
    now = datetime.now(UTC)
    with MongoClient(standin_uri) as client:
        client[database].courses.insert_one(
            {
                "_id": course_id,
                "course_title": "Offline SQL",
                "course_description": "",
                "display_price": {"amount": Decimal128("0.00"), "currency": "USD"},
                "enrolled_users": [],
                "enrollers": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    env = server_env(
        # Nothing listens on port 1: every SQL connection attempt is refused at once.
        DATABASE_URL="postgres://postgres@127.0.0.1:1/enrollment",
        # The pool waits this long for a connection before the 503 (default 2 s).
        SQL_CONNECT_TIMEOUT="0.5",
        MONGODB_URI=standin_uri,
        MONGODB_DB=database,
    )
    with UvicornServer(env) as server:
        yield server, str(course_id)
    with MongoClient(standin_uri) as client:
        client.drop_database(database)


def _is_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["detail"]
    assert "Traceback" not in response.text


@processes
@timed
def test_sql_down_account_endpoints_503_and_token_enrollment_works(sql_down_server, timed):
    server, course_id = sql_down_server
    user = bearer(mint_access(4242, "carol"))
    admin = bearer(mint_access(1, "root", is_staff=True, is_superuser=True))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        started = time.monotonic()
        _is_503(client.post("/api/auth/login/", json={"username": "carol", "password": "pw"}))
        _is_503(
            client.post(
                "/api/auth/register/",
                json={"username": "dave", "email": "d@example.com", "password": "Long-pass-123"},
            )
        )
        _is_503(client.post("/api/auth/refresh/", json={"refresh": mint_access(4242, "carol")}))
        _is_503(client.get("/api/auth/me/", headers=user))
        _is_503(client.get("/api/users/", headers=admin))
        _is_503(
            client.post(f"/api/courses/{course_id}/assign/", json={"user_id": 5}, headers=admin)
        )
        assert not timed or time.monotonic() - started < 5, "503s must be quick"

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["sql"]

        # Enrollment trusts the token's claims: no SQL on that path.
        first = client.post(f"/api/courses/{course_id}/enroll/", headers=user)
        assert first.status_code == 201, first.text
        assert first.json()["username"] == "carol"
        assert client.post(f"/api/courses/{course_id}/enroll/", headers=user).status_code == 200
        assert client.get("/api/courses/", headers=user).json()["count"] >= 1
        mine = client.get("/api/enrollments/", headers=user).json()
        assert [e["course_id"] for e in mine["results"]] == [course_id]
        assert "Traceback" not in server.log()
