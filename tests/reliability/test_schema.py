"""The OpenAPI document matches docs/api.md: every endpoint, body, status and the auth."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.courses.test_enroll import ENROLLMENT_KEYS
from tests.reliability.test_permission_matrix import ADMIN, EXPECTED, PUBLIC

API_REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _table(section: str) -> list[list[str]]:
    """The body rows of the table in docs/api.md's `## <section>`."""
    text = API_REFERENCE.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("|")
    ]
    return [row for row in rows if row[0] != "method" and not row[0].startswith("---")]


# (path, method) -> the statuses docs/api.md gives it (413/415 wherever a body is read).
CONTRACT = {
    (path.strip("`"), method.lower()): {int(status) for status in statuses.split()}
    for method, path, _who, statuses, _does in _table("Endpoints")
}
PLANNED = {(path.strip("`"), method.lower()) for method, path, _ in _table("Version 2 (planned)")}
WHO = {(path.strip("`"), method.lower()): who for method, path, who, *_ in _table("Endpoints")}

# Open to every user, with parameter values only admins may use (403 for the others).
ADMIN_ONLY_PARAMETER_VALUES = {("/api/courses/", "get")}
# Open to every user, with a 403 of its own: withdrawing from an admin's assignment.
USER_FORBIDDEN_STATES = {("/api/courses/{course_id}/enroll/", "delete")}


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


def _statuses(schema: dict) -> dict[tuple[str, str], set[int]]:
    return {
        (route, method): {int(code) for code in operation["responses"]}
        for route, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def test_every_endpoint_and_status_is_documented(schema):
    assert len(CONTRACT) >= 15
    assert _statuses(schema) == CONTRACT


async def test_the_served_schema_matches_the_api_reference(api):
    """What /api/schema/ serves is what docs/api.md lists as built, and nothing it lists
    as planned (version 2) is served yet: a landed endpoint moves to the built table."""
    response = await api.get("/api/schema/", params={"format": "json"})
    assert response.status_code == 200
    served = _statuses(response.json())
    assert served == CONTRACT
    assert len(PLANNED) + len(CONTRACT) >= 29  # both tables were read (16 + 13 at first)
    assert PLANNED.isdisjoint(served), "served but listed as planned in docs/api.md"


def test_who_column_matches_the_security(schema):
    for (route, method), who in WHO.items():
        operation = schema["paths"][route][method]
        assert who in ("anyone", "user", "admin"), (route, method)
        assert bool(operation.get("security")) == (who != "anyone"), (route, method)
        admin_only_values = (route, method) in ADMIN_ONLY_PARAMETER_VALUES | USER_FORBIDDEN_STATES
        assert (403 in CONTRACT[(route, method)]) == (who == "admin" or admin_only_values), (
            route,
            method,
        )


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
        "/api/enrollments/{enrollment_id}/": "enrollment-detail",
        "/api/courses/{course_id}/enrollments/": "course-enrollments",
        "/api/courses/{course_id}/enrollments/{user_id}/": "course-enrollment",
        "/api/courses/{course_id}/enrollments/{user_id}/complete/": "course-enrollment-complete",
        "/api/courses/{course_id}/report/": "course-report",
        "/api/assignments/": "assignment-list",
        "/api/assignments/{assignment_id}/": "assignment-detail",
        "/api/courses/{course_id}/assignment-jobs/": "course-assignment-jobs",
        "/api/assignment-jobs/{id}/": "assignment-job-detail",
        "/api/assignment-jobs/{id}/results/": "assignment-job-results",
        "/healthz": "healthz",
        "/readyz": "readyz",
    }
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            level = EXPECTED[(names[route], method.upper())]
            secured = bool(operation.get("security"))
            assert secured == (level != PUBLIC), (route, method)
            admin_only_values = (
                route,
                method,
            ) in ADMIN_ONLY_PARAMETER_VALUES | USER_FORBIDDEN_STATES
            assert (403 in CONTRACT[(route, method)]) == (level == ADMIN or admin_only_values), (
                route,
                method,
            )
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
        "capacity",
        "seats_left",
        "enrollment_opens_at",
        "enrollment_closes_at",
        "status",
        "updated_at",
    }
    assert "enrolled_users" not in components["Course"]["required"]
    assert components["PatchedCourseUpdateRequest"]["additionalProperties"] is False
    assert set(components["PatchedCourseUpdateRequest"]["properties"]) == {
        "course_title",
        "course_description",
        "display_price",
        "capacity",
        "enrollment_opens_at",
        "enrollment_closes_at",
        "status",
    }
    course_list = schema["paths"]["/api/courses/"]["get"]["parameters"]
    ordering = next(p for p in course_list if p["name"] == "ordering")
    assert set(ordering["schema"]["enum"]) == {
        "created_at",
        "-created_at",
        "course_title",
        "-course_title",
        "enrollers",
        "-enrollers",
    }
    assert {p["name"] for p in course_list} >= {"limit", "offset", "status", "search"}
    assert set(components["Enrollment"]["properties"]) == ENROLLMENT_KEYS
    status_enum = components["Enrollment"]["properties"]["status"]
    status_ref = status_enum.get("$ref") or status_enum["allOf"][0]["$ref"]
    assert set(components[status_ref.rsplit("/", 1)[1]]["enum"]) == {
        "active",
        "waitlisted",
        "completed",
        "withdrawn",
    }
    assert set(components["CourseReport"]["properties"]) == {
        "course_id",
        "counts",
        "members",
        "capacity",
        "seats_left",
        "overdue",
        "completion_rate",
    }
    assert set(components["AssignmentReport"]["properties"]) == {
        "id",
        "course_id",
        "dry_run",
        "summary",
        "results",
        "enrollers",
    }
    assert set(components["AssignMultipleRequest"]["properties"]) == {
        "user_ids",
        "usernames",
        "emails",
        "due_at",
        "dry_run",
        "override_capacity",
    }
    assert set(components["AssignRequest"]["properties"]) == {
        "user_id",
        "due_at",
        "override_capacity",
    }
    multiple = schema["paths"]["/api/courses/{course_id}/assign-multiple/"]["post"]
    assert set(multiple["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert multiple["requestBody"]["content"]["text/csv"]["schema"]["type"] == "string"
    assert {p["name"] for p in multiple["parameters"] if p["in"] == "query"} == {
        "dry_run",
        "override_capacity",
    }
    enroll = schema["paths"]["/api/courses/{course_id}/enroll/"]["post"]
    assert "requestBody" not in enroll


IDEMPOTENT = [
    ("/api/courses/", "post"),
    ("/api/courses/{course_id}/enroll/", "post"),
    ("/api/courses/{course_id}/assign/", "post"),
    ("/api/courses/{course_id}/assign-multiple/", "post"),
    ("/api/courses/{course_id}/assignment-jobs/", "post"),
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
