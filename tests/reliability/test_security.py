"""Tokens, privacy between users, and HTTP hardening in production settings."""

import json
import os
import subprocess
import sys
import time

import httpx
import jwt
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.urls import path
from django.utils.timezone import now as django_now

from tests.reliability.conftest import processes
from tests.reliability.servers import PROJECT_ROOT, bearer, mint_access, server_env
from tests.reliability.test_permission_matrix import EXPECTED, discovered_routes

USERS = "/api/users/"


def _tokens(user) -> dict[str, str]:
    from accounts.tokens import tokens_for_user

    return tokens_for_user(user)


# JWT


async def test_forged_tokens_never_reach_an_admin_endpoint(api, make_user):
    """Every way of forging admin rights is a 401 (bad token) or 403 (not an admin)."""
    user = await make_user(username="mallory")
    pair = await sync_to_async(_tokens)(user)
    claims = jwt.decode(pair["access"], options={"verify_signature": False})
    admin_claims = {**claims, "is_staff": True, "is_superuser": True}
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"]
    now = int(time.time())
    header, _, signature = pair["access"].split(".")
    tampered = jwt.utils.base64url_encode(json.dumps(admin_claims).encode()).decode()
    refused = {
        "alg none": jwt.encode(admin_claims, None, algorithm="none"),
        "wrong key": jwt.encode(admin_claims, "not-the-key-" * 4, algorithm="HS256"),
        "expired": jwt.encode({**admin_claims, "exp": now - 1, "iat": now - 900}, key),
        "refresh as access": pair["refresh"],
        "tampered claims": f"{header}.{tampered}.{signature}",
        "HS512 with the key": jwt.encode(admin_claims, key, algorithm="HS512"),
        "no user id": jwt.encode({k: v for k, v in admin_claims.items() if k != "user_id"}, key),
        "user id not a number": jwt.encode({**admin_claims, "user_id": "1 OR 1=1"}, key),
    }
    for name, token in refused.items():
        response = await api.get(USERS, headers=bearer(token))
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
    # A token correctly signed but claiming admin for a non-admin (a leaked key, or
    # a token issued before a demotion): the SQL confirmation refuses it.
    signed = jwt.encode(admin_claims, key, algorithm="HS256")
    response = await api.get(USERS, headers=bearer(signed))
    assert response.status_code == 403
    assigned = await api.post(
        "/api/courses/" + "a" * 24 + "/assign-multiple/",
        json={"user_ids": [user.id]},
        headers=bearer(signed),
    )
    assert assigned.status_code == 403


def test_production_refuses_to_start_without_secret_key():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    env["DEBUG"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT_ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "asgi_app.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert "SECRET_KEY is not set" in done.stderr


def test_the_development_key_is_only_used_with_debug():
    dev_key = "dev-insecure-secret-key-do-not-use-in-production"
    probe = "from django.conf import settings; print(settings.SIMPLE_JWT['SIGNING_KEY'])"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY")}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", f"import django; django.setup(); {probe}"],
        cwd=PROJECT_ROOT,
        env={
            **env,
            "DEBUG": "0",
            "SECRET_KEY": "s" * 50,
            "DJANGO_SETTINGS_MODULE": "asgi_app.settings",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "s" * 50 != dev_key


# Privacy between users


async def test_no_user_sees_another_users_data(api, make_user, auth_for, admin, create_course):
    """A regular user calls every endpoint: the other user's name never comes back."""
    victim = await make_user(username="victim_zed", email="zed@example.com")
    course = await create_course()
    enroll = f"/api/courses/{course['id']}/enroll/"
    assert (await api.post(enroll, headers=await auth_for(victim))).status_code == 201
    detail = await api.get(f"/api/courses/{course['id']}/", headers=admin[1])
    assert {"user_id": victim.id, "username": "victim_zed"} in detail.json()["enrolled_users"]

    snoop = await make_user(username="snoop")
    headers = await auth_for(snoop)
    probes = [
        ("GET", "/api/courses/", None),
        ("GET", f"/api/courses/{course['id']}/", None),
        ("GET", "/api/enrollments/", None),
        ("GET", "/api/enrollments/?user_id=" + str(victim.id), None),
        ("GET", "/api/auth/me/", None),
        ("GET", "/api/users/?search=victim", None),
        ("POST", f"/api/courses/{course['id']}/assign/", {"user_id": victim.id}),
        ("POST", f"/api/courses/{course['id']}/assign-multiple/", {"user_ids": [victim.id]}),
        ("POST", "/api/auth/login/", {"username": "victim_zed", "password": "wrong"}),
        ("POST", "/api/auth/register/", {"username": "victim_zed", "email": "x@example.com"}),
    ]
    for method, url, body in probes:
        response = await api.request(method, url, json=body, headers=headers)
        text = response.text.lower()
        if url == "/api/auth/register/":
            # Echoes the caller's own input as taken, without anything about the owner.
            assert "zed@example.com" not in text
            continue
        assert "victim_zed" not in text, (method, url, response.text)
        assert "zed@example.com" not in text, (method, url)
    detail = (await api.get(f"/api/courses/{course['id']}/", headers=headers)).json()
    assert "enrolled_users" not in detail
    mine = (await api.get("/api/enrollments/", headers=headers)).json()
    assert mine["count"] == 0


async def test_login_errors_do_not_reveal_whether_a_username_exists(api, make_user):
    await make_user(username="existing_user")
    known = await api.post(
        "/api/auth/login/", json={"username": "existing_user", "password": "wrong-one"}
    )
    unknown = await api.post(
        "/api/auth/login/", json={"username": "nobody_here", "password": "wrong-one"}
    )
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()


# HTTP hardening


async def test_security_headers(api, regular):
    response = await api.get("/api/courses/", headers=regular[1])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


async def test_cors_is_off_by_default(api, regular):
    preflight = await api.options(
        "/api/courses/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    response = await api.get(
        "/api/courses/", headers={**regular[1], "Origin": "https://evil.example"}
    )
    for answer in (preflight, response):
        assert "Access-Control-Allow-Origin" not in answer.headers


async def test_options_is_answered_on_every_api_route(api, regular, create_course):
    """Regression (found by schemathesis): OPTIONS was a 500 on every API view."""
    course = await create_course()
    for (_name, _method), route in discovered_routes().items():
        if not route.startswith("api/") or route.startswith("api/docs"):
            continue
        url = "/" + route.replace("<objectid:course_id>", course["id"]).replace(
            "<objectid:id>", course["id"]
        )
        response = await api.options(url, headers=regular[1])
        assert response.status_code in (200, 403), (url, response.status_code)
    assert EXPECTED  # the same route list as the permission matrix


def _boom(request):
    raise RuntimeError("boom: secret internals")


async def test_404_and_500_are_json_without_debug(api, settings):
    from asgi_app import urls

    settings.DEBUG = False
    settings.ROOT_URLCONF = type(
        "BoomUrls",
        (),
        {
            "urlpatterns": [path("boom/", _boom), *urls.urlpatterns],
            "handler404": urls.handler404,
            "handler500": urls.handler500,
        },
    )
    missing = await api.get("/no/such/page/")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json()["detail"] == "Not found."
    crash = await api.get("/boom/")
    assert crash.status_code == 500
    assert crash.headers["Content-Type"] == "application/json"
    assert crash.json() == {"detail": "Internal server error.", "code": "server_error"}
    assert "secret internals" not in crash.text


@processes
def test_production_server_headers_cors_and_errors(prod_server):
    token = bearer(mint_access(prod_server.ids["regular"], "regular"))
    allowed = "https://app.example.com"
    with httpx.Client(base_url=prod_server.url, timeout=10) as client:
        response = client.get("/api/courses/", headers={**token, "Origin": allowed})
        assert response.status_code == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Access-Control-Allow-Origin"] == allowed
        assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
        preflight = client.options(
            "/api/courses/",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == allowed
        other = client.get("/api/courses/", headers={**token, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        # HSTS is sent on HTTPS only (here: behind a proxy that says so).
        https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert https.headers["Strict-Transport-Security"] == "max-age=3600"
        # No debug pages: unknown URLs and bad hosts are JSON or bare, never HTML traces.
        missing = client.get("/api/nope/")
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/json"
        assert client.get("/admin/").status_code == 302
        bad_host = client.get("/healthz", headers={"Host": "attacker.example"})
        assert bad_host.status_code == 400
        assert "Traceback" not in bad_host.text
        assert "DisallowedHost" not in bad_host.text


@pytest.mark.parametrize("origin", ["https://app.example.com"])
def test_cors_origins_come_from_the_environment(origin):
    probe = (
        "from django.conf import settings; "
        "print(settings.CORS_ALLOWED_ORIGINS, "
        "'corsheaders.middleware.CorsMiddleware' in settings.MIDDLEWARE)"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", f"import django; django.setup(); {probe}"],
        cwd=PROJECT_ROOT,
        env=server_env(CORS_ALLOWED_ORIGINS=f"{origin}, https://admin.example.com"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == f"['{origin}', 'https://admin.example.com'] True"


ODD_USER_IDS = ["\u00b2", "\u0661\u0662", "12\u00b2", 2**70, 2**63, 0, -1, "0", " 1", 1.5, True]


@pytest.mark.parametrize("user_id", ODD_USER_IDS)
async def test_correctly_signed_tokens_with_odd_user_ids_are_401(api, user_id):
    """`"²".isdigit()` is true and 2**70 overflows SQL: both were a 500 with a valid signature."""
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"]
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + 60, "iat": now, "jti": "j", "user_id": user_id}
    token = jwt.encode(claims, key, algorithm="HS256")
    for url in ("/api/auth/me/", "/api/enrollments/"):
        response = await api.get(url, headers=bearer(token))
        assert response.status_code == 401, (url, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("user_id", ODD_USER_IDS)
async def test_correctly_signed_refresh_tokens_with_odd_user_ids_are_401(api, user_id):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    key = django_settings.SIMPLE_JWT["SIGNING_KEY"]
    now = int(time.time())
    jti = f"odd-{user_id!r}"
    claims = {"token_type": "refresh", "exp": now + 60, "iat": now, "jti": jti, "user_id": user_id}
    token = jwt.encode(claims, key, algorithm="HS256")
    await OutstandingToken.objects.acreate(jti=jti, token=token, expires_at=django_now())
    response = await api.post("/api/auth/refresh/", json={"refresh": token})
    assert response.status_code == 401, response.text
    assert await OutstandingToken.objects.acount() == 1  # no pair was issued
