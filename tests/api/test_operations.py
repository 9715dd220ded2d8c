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
