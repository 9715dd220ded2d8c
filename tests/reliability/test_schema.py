"""The OpenAPI document matches shared/API.md: every endpoint, body, status and the auth."""

import io

import pytest
from django.core.management import call_command

from tests.reliability.test_permission_matrix import ADMIN, EXPECTED, PUBLIC

# (path, method) -> the statuses API.md gives it (413/415 wherever a body is read).
CONTRACT = {
    ("/api/auth/register/", "post"): {201, 400, 413, 415, 429, 503},
    ("/api/auth/login/", "post"): {200, 400, 401, 413, 415, 429, 503},
    ("/api/auth/refresh/", "post"): {200, 400, 401, 413, 415, 429, 503},
    ("/api/auth/logout/", "post"): {205, 400, 401, 413, 415, 503},
    ("/api/auth/me/", "get"): {200, 401, 503},
    ("/api/users/", "get"): {200, 401, 403, 503},
    ("/api/courses/", "get"): {200, 401, 503},
    ("/api/courses/", "post"): {201, 400, 401, 403, 409, 413, 415, 422, 503},
    ("/api/courses/{course_id}/", "get"): {200, 401, 404, 503},
    # 400 (a malformed Idempotency-Key), 409 and 422 (its replay rules) on the idempotent POSTs.
    ("/api/courses/{course_id}/enroll/", "post"): {200, 201, 400, 401, 404, 409, 413, 422, 503},
    ("/api/courses/{course_id}/assign/", "post"): {
        200,
        201,
        400,
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        503,
    },
    ("/api/courses/{course_id}/assign-multiple/", "post"): {
        200,
        400,
        401,
        403,
        404,
        409,
        413,
        415,
        422,
        503,
    },
    ("/api/enrollments/", "get"): {200, 401, 503},
    ("/healthz", "get"): {200},
    ("/readyz", "get"): {200, 503},
}


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = io.StringIO()
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "s.yaml"),
        stderr=out,
    )
    assert "Warning" not in out.getvalue()


def test_every_endpoint_and_status_is_documented(schema):
    documented = {
        (route, method): {int(code) for code in operation["responses"]}
        for route, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == CONTRACT


def test_operations_describe_themselves(schema):
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (route, method)
            # Not the base view's docstring, which every view used to inherit.
            assert "adrf" not in operation.get("description", ""), (route, method)


def test_security_matches_the_permission_matrix(schema):
    assert schema["components"]["securitySchemes"]["jwtAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Access token from /api/auth/login/, sent as `Bearer <access>`.",
    }
    names = {
        "/api/auth/register/": "auth-register",
        "/api/auth/login/": "auth-login",
        "/api/auth/refresh/": "auth-refresh",
        "/api/auth/logout/": "auth-logout",
        "/api/auth/me/": "auth-me",
        "/api/users/": "user-list",
        "/api/courses/": "course-list",
        "/api/courses/{course_id}/": "course-detail",
        "/api/courses/{course_id}/enroll/": "course-enroll",
        "/api/courses/{course_id}/assign/": "course-assign",
        "/api/courses/{course_id}/assign-multiple/": "course-assign-multiple",
        "/api/enrollments/": "enrollment-list",
        "/healthz": "healthz",
        "/readyz": "readyz",
    }
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            level = EXPECTED[(names[route], method.upper())]
            secured = bool(operation.get("security"))
            assert secured == (level != PUBLIC), (route, method)
            assert (403 in CONTRACT[(route, method)]) == (level == ADMIN), (route, method)
            if level != PUBLIC:
                assert 401 in CONTRACT[(route, method)], (route, method)


def test_bodies_and_shapes(schema):
    components = schema["components"]["schemas"]
    for name in (
        "RegisterRequest",
        "LoginRequest",
        "RefreshRequest",
        "CourseCreateRequest",
        "AssignRequest",
        "AssignMultipleRequest",
    ):
        assert components[name]["additionalProperties"] is False, name
    user_ids = components["AssignMultipleRequest"]["properties"]["user_ids"]
    assert user_ids["type"] == "array"
    assert user_ids["items"]["type"] == "integer"
    assert (user_ids["minItems"], user_ids["maxItems"]) == (1, 10_000)
    assert set(components["Course"]["properties"]) == {
        "id",
        "course_title",
        "course_description",
        "display_price",
        "enrollers",
        "created_at",
        "enrolled_users",
    }
    assert "enrolled_users" not in components["Course"]["required"]
    assert set(components["Enrollment"]["properties"]) == {
        "id",
        "user_id",
        "username",
        "course_id",
        "status",
        "enrolled_at",
        "source",
    }
    assert set(components["AssignmentReport"]["properties"]) == {
        "course_id",
        "summary",
        "results",
        "enrollers",
    }
    enroll = schema["paths"]["/api/courses/{course_id}/enroll/"]["post"]
    assert "requestBody" not in enroll


IDEMPOTENT = [
    ("/api/courses/", "post"),
    ("/api/courses/{course_id}/enroll/", "post"),
    ("/api/courses/{course_id}/assign/", "post"),
    ("/api/courses/{course_id}/assign-multiple/", "post"),
]


def test_idempotent_operations_document_the_header_and_its_answers(schema):
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            if (route, method) not in IDEMPOTENT:
                assert headers == [], (route, method)
                continue
            assert [(p["name"], p.get("required", False), p["schema"]) for p in headers] == [
                ("Idempotency-Key", False, {"type": "string"})
            ]
            responses = operation["responses"]
            assert "idempotency_key_in_progress" in responses["409"]["description"]
            assert "idempotency_key_reused" in responses["422"]["description"]
            assert "Idempotency-Key" in responses["400"]["description"]
    logout = schema["paths"]["/api/auth/logout/"]["post"]["responses"]["205"]
    assert "content" not in logout
    course_id = schema["paths"]["/api/courses/{course_id}/"]["get"]["parameters"][0]
    assert course_id["schema"]["pattern"] == "^[0-9a-fA-F]{24}$"
