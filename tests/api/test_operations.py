from bson import ObjectId

from mongo.indexes import unique_enrollment_index_exists


async def test_healthz(api):
    response = await api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


async def test_request_id_is_echoed_when_sane(api):
    response = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    forged = await api.get("/healthz", headers={"X-Request-ID": "bad\nid"})
    assert forged.headers["X-Request-ID"] != "bad\nid"


async def test_readyz_when_everything_is_up(api):
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"sql": "ok", "mongodb": "ok"}


async def test_unknown_url_is_json_404(api):
    response = await api.get("/api/nope/")
    assert response.status_code == 404
    assert response.json()["detail"]


async def test_schema_and_docs_are_served(api):
    schema = await api.get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/auth/register/",
        "/api/courses/{course_id}/assign-multiple/",
        "/api/enrollments/",
        "/api/users/",
    ):
        assert path in paths
    assert "jwtAuth" in schema.json()["components"]["securitySchemes"]
    docs = await api.get("/api/docs/")
    assert docs.status_code == 200


async def test_access_log_line_carries_the_request_id(api, settings):
    import logging

    from asgi_app.logging import JsonFormatter, RequestIdFilter

    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Capture()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("asgi_app.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        response = await api.get("/healthz", headers={"X-Request-ID": "trace-42"})
    finally:
        access.setLevel(level)
        access.removeHandler(handler)
    import json

    entry = json.loads(lines[-1])
    assert entry["request_id"] == response.headers["X-Request-ID"] == "trace-42"
    assert entry["message"] == "GET /healthz 200"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0


async def test_readyz_recreates_a_missing_enrollment_index(api, mongo_db):
    # Given MongoDB lost the unique enrollment index (it came back empty), no duplicates
    await mongo_db.enrollments.drop_index("course_user_unique")
    assert not await unique_enrollment_index_exists(mongo_db)
    # When readiness is probed
    response = await api.get("/readyz")
    # Then it put the index back and is ready
    assert response.status_code == 200, response.text
    assert await unique_enrollment_index_exists(mongo_db)


async def test_readyz_fails_naming_mongodb_when_the_enrollment_index_cannot_exist(api, mongo_db):
    # Given the unique index lost and a (course, user) pair enrolled twice meanwhile
    await mongo_db.enrollments.drop_index("course_user_unique")
    pair = {"course_id": ObjectId(), "user_id": 7}
    await mongo_db.enrollments.insert_many([dict(pair), dict(pair)])
    # When readiness is probed
    response = await api.get("/readyz")
    # Then it is not ready, says why, and wrote nothing
    assert response.status_code == 503
    assert response.json()["failed"] == ["mongodb"]
    assert response.json()["checks"] == {"sql": "ok", "mongodb": "index_missing"}
    assert not await unique_enrollment_index_exists(mongo_db)
    assert await mongo_db.enrollments.count_documents(pair) == 2
