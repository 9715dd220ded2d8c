"""The global permission guard: every route of the URL conf has an expected access level.

The routes are discovered by walking the URL resolver, so an endpoint added without an
entry in EXPECTED fails here (and so does an entry whose route disappeared). Each entry is
then exercised for anonymous, regular, inactive, staff and superuser callers.
"""

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import ROLES

PUBLIC = "public"  # no token needed
AUTHENTICATED = "authenticated"  # any signed, unexpired access token (stateless)
ACTIVE_USER = "active user"  # a token of a user who is still active in SQL
ADMIN = "admin"  # staff or superuser, confirmed in SQL
DJANGO_ADMIN = "django admin"  # Django's admin site: session login, staff only
CONSOLE_PUBLIC = "console public"  # the console's sign-in and sign-out pages
CONSOLE_USER = "console user"  # the web console: session login, any active user
CONSOLE_ADMIN = "console admin"  # the web console's admin pages: session login, staff only

EXPECTED = {
    ("healthz", "GET"): PUBLIC,
    ("readyz", "GET"): PUBLIC,
    ("schema", "GET"): PUBLIC,
    ("docs", "GET"): PUBLIC,
    ("redoc", "GET"): PUBLIC,
    ("root", "GET"): PUBLIC,
    ("auth-register", "POST"): PUBLIC,
    ("auth-login", "POST"): PUBLIC,
    ("auth-refresh", "POST"): PUBLIC,
    ("auth-logout", "POST"): PUBLIC,
    ("auth-me", "GET"): ACTIVE_USER,
    ("user-list", "GET"): ADMIN,
    ("course-list", "GET"): AUTHENTICATED,
    ("course-list", "POST"): ADMIN,
    ("course-detail", "GET"): AUTHENTICATED,
    ("course-detail", "PATCH"): ADMIN,
    ("course-enroll", "POST"): AUTHENTICATED,
    ("course-assign", "POST"): ADMIN,
    ("course-assign-multiple", "POST"): ADMIN,
    ("enrollment-list", "GET"): AUTHENTICATED,
    ("course-enroll", "DELETE"): AUTHENTICATED,  # own enrollment; admin-assigned: 403 code
    ("course-enrollments", "GET"): ADMIN,
    ("course-enrollment", "GET"): ADMIN,
    ("course-enrollment", "DELETE"): ADMIN,
    ("course-enrollment-complete", "POST"): ADMIN,
    ("course-report", "GET"): ADMIN,
    ("enrollment-detail", "GET"): AUTHENTICATED,  # own; another user's is a 404
    ("assignment-list", "GET"): ADMIN,
    ("assignment-detail", "GET"): ADMIN,
    ("course-assignment-jobs", "POST"): ADMIN,
    ("assignment-job-detail", "GET"): ADMIN,
    ("assignment-job-detail", "DELETE"): ADMIN,
    ("assignment-job-results", "GET"): ADMIN,
    ("admin:*", "*"): DJANGO_ADMIN,
    ("console-login", "GET"): CONSOLE_PUBLIC,
    ("console-login", "POST"): CONSOLE_PUBLIC,
    ("console-login", "PUT"): CONSOLE_PUBLIC,  # Django's FormView: PUT is POST
    ("console-logout", "POST"): CONSOLE_PUBLIC,
    ("console-home", "GET"): CONSOLE_USER,
    ("console-catalogue", "GET"): CONSOLE_USER,
    ("console-course", "GET"): CONSOLE_USER,
    ("console-enroll", "POST"): CONSOLE_USER,
    ("console-withdraw", "POST"): CONSOLE_USER,
    ("console-my-training", "GET"): CONSOLE_USER,
    ("console-manage-courses", "GET"): CONSOLE_ADMIN,
    ("console-course-create", "GET"): CONSOLE_ADMIN,
    ("console-course-create", "POST"): CONSOLE_ADMIN,
    ("console-manage-course", "GET"): CONSOLE_ADMIN,
    ("console-course-edit", "GET"): CONSOLE_ADMIN,
    ("console-course-edit", "POST"): CONSOLE_ADMIN,
    ("console-course-status", "POST"): CONSOLE_ADMIN,
    ("console-assign", "GET"): CONSOLE_ADMIN,
    ("console-assign", "POST"): CONSOLE_ADMIN,
    ("console-assign-confirm", "POST"): CONSOLE_ADMIN,
    ("console-assign-report", "GET"): CONSOLE_ADMIN,
    ("console-assign-report-csv", "GET"): CONSOLE_ADMIN,
    ("console-assignments", "GET"): CONSOLE_ADMIN,
    ("console-roster-csv", "GET"): CONSOLE_ADMIN,
    ("console-jobs", "GET"): CONSOLE_ADMIN,
    ("console-job-new", "GET"): CONSOLE_ADMIN,
    ("console-job-new", "POST"): CONSOLE_ADMIN,
    ("console-job", "GET"): CONSOLE_ADMIN,
    ("console-job-progress", "GET"): CONSOLE_ADMIN,
    ("console-job-cancel", "POST"): CONSOLE_ADMIN,
    ("console-job-confirm", "POST"): CONSOLE_ADMIN,
    ("console-job-results-csv", "GET"): CONSOLE_ADMIN,
}
# Plain Django function views answer any method; the table names the one they serve.
_FUNCTION_VIEW_METHODS = {"healthz": ["GET"], "readyz": ["GET"], "root": ["GET"]}
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        elif isinstance(pattern, URLPattern):
            yield namespace, pattern.name, prefix + str(pattern.pattern), pattern.callback


def discovered_routes() -> dict[tuple[str, str], str]:
    """(route name, method) -> route, for every route in the URL conf."""
    routes = {}
    for namespace, name, route, callback in _walk(get_resolver().url_patterns):
        if namespace == "admin":
            routes[("admin:*", "*")] = "admin/"
            continue
        assert name, f"route {route!r} has no name: give it one and an EXPECTED entry"
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if hasattr(callback, "http_methods"):  # console views name the methods they serve
            methods = callback.http_methods
        elif view_class is None:
            methods = _FUNCTION_VIEW_METHODS.get(name, ["?"])
        else:
            methods = [
                m.upper()
                for m in _HTTP_METHODS
                if hasattr(view_class, m) and m in view_class.http_method_names
            ]
        for method in methods:
            routes[(name, method)] = route
    return routes


def test_every_route_has_an_expected_access_level():
    routes = discovered_routes()
    unknown = sorted(set(routes) - set(EXPECTED))
    stale = sorted(set(EXPECTED) - set(routes))
    assert not unknown, f"routes without a permission entry in EXPECTED: {unknown}"
    assert not stale, f"EXPECTED entries for routes that no longer exist: {stale}"


def route_url(route: str, course_id: str, user_id: int = 1) -> str:
    """A concrete URL for a route of the URL conf (any enrollment or report id: a
    well-formed one)."""
    return "/" + (
        route.replace("<objectid:course_id>", course_id)
        .replace("<int:user_id>", str(user_id))
        .replace("<objectid:enrollment_id>", "65f0c0ffee0000000000abcd")
        .replace("<objectid:report_id>", course_id)  # names no assignment: a 404 for admins
        .replace("<objectid:assignment_id>", course_id)  # any ObjectId: a 404
        .replace("<objectid:id>", course_id)  # names no job: a 404 for admins
        .replace("<objectid:job_id>", course_id)
    )


def _refresh_for(user) -> str:
    from accounts.tokens import tokens_for_user

    return tokens_for_user(user)["refresh"]


async def _body(name: str, *, make_user, target_user_id: int) -> dict | None:
    if name == "auth-register":
        tag = uuid.uuid4().hex[:8]
        return {"username": f"m{tag}", "email": f"m{tag}@example.com", "password": "Str0ng-pass!"}
    if name == "auth-login":
        user = await make_user()
        return {"username": user.username, "password": "correct-horse-battery"}
    if name in ("auth-refresh", "auth-logout"):
        return {"refresh": await sync_to_async(_refresh_for)(await make_user())}
    if name == "course-list":
        return {
            "course_title": "Matrix",
            "course_description": "",
            "display_price": {"amount": "1.00", "currency": "USD"},
        }
    if name == "course-detail":  # PATCH (a GET sends no body)
        return {"course_description": "Patched by the matrix."}
    if name == "course-assign":
        return {"user_id": target_user_id}
    if name == "course-assign-multiple":
        return {"user_ids": [target_user_id]}
    return None


def _allowed(level: str, role: str) -> bool | None:
    """True: must not be 401/403. False: must be refused. None: not checked here."""
    if level == PUBLIC:
        return True
    if role == "anonymous":
        return False
    if level == AUTHENTICATED:
        return True
    if level == ACTIVE_USER:
        return role != "inactive"
    if level == ADMIN:
        return role in ("staff", "superuser")
    return None


@pytest.mark.parametrize("role", ROLES)
async def test_permission_matrix(api, role, role_headers, make_user, create_course):
    course = await create_course()
    target = await make_user()
    headers = await role_headers(role)
    for (name, method), route in sorted(discovered_routes().items()):
        level = EXPECTED[(name, method)]
        if level == DJANGO_ADMIN:
            # Session-authenticated: a bearer token, even a staff one, is not a login.
            response = await api.get("/admin/", headers=headers)
            assert response.status_code == 302, (role, name)
            assert "/admin/login/" in response.headers["Location"]
            continue
        if level in (CONSOLE_PUBLIC, CONSOLE_USER, CONSOLE_ADMIN):
            # Session-authenticated, CSRF-protected forms: a bearer token is no login, a
            # form posted without the CSRF token is refused before the view runs, and a
            # page without a session goes to the sign-in page (tests/console: signed in).
            response = await api.request(method, route_url(route, course["id"]), headers=headers)
            if method != "GET":
                assert response.status_code == 403, (role, name, method)
            elif level == CONSOLE_PUBLIC:
                assert response.status_code == 200, (role, name, method)
            else:
                assert response.status_code == 302, (role, name, method)
                assert response.headers["Location"].startswith("/console/login/?next=")
            continue
        body = await _body(name, make_user=make_user, target_user_id=target.id)
        response = await api.request(
            method, route_url(route, course["id"], target.id), json=body, headers=headers
        )
        assert response.status_code < 500, (role, name, method, response.text[:200])
        if _allowed(level, role):
            assert response.status_code not in (401, 403), (role, name, method, response.text)
        elif role == "anonymous" or (level == ACTIVE_USER and role == "inactive"):
            assert response.status_code == 401, (role, name, method)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 403, (role, name, method)
            assert response.json()["detail"]
