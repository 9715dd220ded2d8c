import asyncio
import json
import threading
import time

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User

PASSWORD = "correct-horse-battery"
REGISTER = "/api/auth/register/"
LOGIN = "/api/auth/login/"
REFRESH = "/api/auth/refresh/"
LOGOUT = "/api/auth/logout/"
ME = "/api/auth/me/"
USER_KEYS = {"id", "username", "email", "phone", "is_staff", "is_superuser", "date_joined"}


async def _count(**filters) -> int:
    return await User.objects.filter(**filters).acount()


async def test_register_returns_user_and_tokens(api):
    body = {
        "username": "carol",
        "email": "Carol@Example.com",
        "password": PASSWORD,
        "phone": "+4915112345678",
    }
    response = await api.post(REGISTER, json=body)
    assert response.status_code == 201
    data = response.json()
    assert set(data) == {"user", "access", "refresh"}
    assert set(data["user"]) == USER_KEYS
    assert data["user"]["username"] == "carol"
    assert data["user"]["email"] == "Carol@Example.com"  # stored as given
    assert data["user"]["phone"] == "+4915112345678"
    assert data["user"]["is_staff"] is False
    assert "password" not in response.text
    me = await api.get(ME, headers={"Authorization": f"Bearer {data['access']}"})
    assert me.status_code == 200
    assert me.json() == data["user"]


async def test_register_phone_is_optional(api):
    response = await api.post(
        REGISTER, json={"username": "dave", "email": "d@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.json()["user"]["phone"] is None


async def test_register_rejects_taken_username_and_email_case_insensitively(api, make_user):
    await make_user(username="erin", email="erin@example.com")
    response = await api.post(
        REGISTER, json={"username": "erin", "email": "ERIN@example.COM", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert response.json() == {
        "username": ["A user with that username already exists."],
        "email": ["A user with that email already exists."],
    }
    assert await _count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": "x", "password": PASSWORD}, "email"),
        ({"username": "x", "email": "x@example.com"}, "password"),
        ({"username": "x", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"username": "x" * 151, "email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": "bad name!", "email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": "x\x00y", "email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": 12, "email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": ["x"], "email": "x@example.com", "password": PASSWORD}, "username"),
        ({"username": "x", "email": "x@example.com", "password": "123"}, "password"),
        ({"username": "x", "email": "x@example.com", "password": "password"}, "password"),
        ({"username": "x", "email": "x@example.com", "password": "a" * 200}, "password"),
        (
            {"username": "x", "email": "x@example.com", "password": PASSWORD, "phone": "12345"},
            "phone",
        ),
        (
            {"username": "x", "email": "x@example.com", "password": PASSWORD, "phone": "+12"},
            "phone",
        ),
        (
            {"username": "x", "email": "x@example.com", "password": PASSWORD, "is_staff": True},
            "is_staff",
        ),
    ],
)
async def test_register_validation_errors(api, body, field):
    response = await api.post(REGISTER, json=body)
    assert response.status_code == 400
    assert field in response.json()
    assert PASSWORD not in response.text
    assert await _count() == 0


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"just a string"', b"\xff\xfe", b"[" * 5000, b"null"]
)
async def test_malformed_bodies_are_400(api, raw):
    for url in (REGISTER, LOGIN, REFRESH, LOGOUT):
        response = await api.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (url, raw[:20], response.text)
        assert response.json()


async def test_login_returns_token_pair_with_claims(api, make_user):
    user = await make_user(username="frank", is_staff=True)
    response = await api.post(LOGIN, json={"username": "frank", "password": PASSWORD})
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"access", "refresh"}
    claims = jwt.decode(data["access"], options={"verify_signature": False})
    assert claims["user_id"] == user.id
    assert claims["username"] == "frank"
    assert claims["is_staff"] is True
    assert claims["token_type"] == "access"
    assert claims["exp"] - claims["iat"] == 15 * 60


@pytest.mark.parametrize(
    ("username", "password", "active"),
    [("grace", "wrong-password", True), ("nobody", PASSWORD, True), ("grace", PASSWORD, False)],
)
async def test_login_failures_are_401_and_indistinguishable(
    api, make_user, username, password, active
):
    await make_user(username="grace", is_active=active)
    response = await api.post(LOGIN, json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json()["detail"] == "No active account found with the given credentials."
    assert password not in response.text


async def test_refresh_rotates_and_blacklists_the_old_token(api, make_user):
    await make_user(username="heidi")
    pair = (await api.post(LOGIN, json={"username": "heidi", "password": PASSWORD})).json()
    rotated = await api.post(REFRESH, json={"refresh": pair["refresh"]})
    assert rotated.status_code == 200
    new = rotated.json()
    assert set(new) == {"access", "refresh"}
    assert new["refresh"] != pair["refresh"]
    again = await api.post(REFRESH, json={"refresh": pair["refresh"]})
    assert again.status_code == 401
    assert (await api.post(REFRESH, json={"refresh": new["refresh"]})).status_code == 200


async def test_concurrent_refresh_of_one_token_succeeds_once(api, make_user):
    await make_user(username="ivan")
    pair = (await api.post(LOGIN, json={"username": "ivan", "password": PASSWORD})).json()
    responses = await asyncio.gather(
        *(api.post(REFRESH, json={"refresh": pair["refresh"]}) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]


async def test_refresh_picks_up_a_demotion(api, make_user):
    user = await make_user(username="judy", is_staff=True)
    pair = (await api.post(LOGIN, json={"username": "judy", "password": PASSWORD})).json()
    await User.objects.filter(pk=user.pk).aupdate(is_staff=False)
    new = (await api.post(REFRESH, json={"refresh": pair["refresh"]})).json()
    assert jwt.decode(new["access"], options={"verify_signature": False})["is_staff"] is False


async def test_refresh_of_deactivated_user_is_401(api, make_user):
    user = await make_user(username="kim")
    pair = (await api.post(LOGIN, json={"username": "kim", "password": PASSWORD})).json()
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    assert (await api.post(REFRESH, json={"refresh": pair["refresh"]})).status_code == 401


async def test_access_token_cannot_be_used_to_refresh(api, make_user):
    await make_user(username="leo")
    pair = (await api.post(LOGIN, json={"username": "leo", "password": PASSWORD})).json()
    assert (await api.post(REFRESH, json={"refresh": pair["access"]})).status_code == 401


async def test_logout_blacklists_refresh_token(api, make_user):
    await make_user(username="mia")
    pair = (await api.post(LOGIN, json={"username": "mia", "password": PASSWORD})).json()
    response = await api.post(LOGOUT, json={"refresh": pair["refresh"]})
    assert response.status_code == 205
    assert (await api.post(REFRESH, json={"refresh": pair["refresh"]})).status_code == 401
    assert (await api.post(LOGOUT, json={"refresh": pair["refresh"]})).status_code == 401


async def test_logout_with_garbage_token_is_401(api):
    response = await api.post(LOGOUT, json={"refresh": "not.a.token"})
    assert response.status_code == 401


async def test_me_requires_a_token(api):
    response = await api.get(ME)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in response.json()


def _forge(
    claims: dict, key: str = "wrong-key-of-a-reasonable-length-0123456789", algorithm: str = "HS256"
) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def test_bad_tokens_are_401(api, make_user):
    user = await make_user(username="nick")
    pair = (await api.post(LOGIN, json={"username": "nick", "password": PASSWORD})).json()
    good = jwt.decode(pair["access"], options={"verify_signature": False})
    now = int(time.time())
    key = settings.SIMPLE_JWT["SIGNING_KEY"]
    unsigned = jwt.encode(good, None, algorithm="none")
    header, _payload, signature = pair["access"].split(".")
    tampered_payload = jwt.utils.base64url_encode(
        json.dumps({**good, "is_staff": True}).encode()
    ).decode()
    tokens = {
        "forged": _forge(good),
        "expired": _forge({**good, "exp": now - 10, "iat": now - 1000}, key=key),
        "alg none": unsigned,
        "refresh as access": pair["refresh"],
        "tampered claims": f"{header}.{tampered_payload}.{signature}",
        "garbage": "abc.def.ghi",
    }
    for name, token in tokens.items():
        response = await api.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
    assert user.id == good["user_id"]


async def test_me_of_deactivated_user_is_401(api, make_user, auth_for):
    user = await make_user(username="olga")
    headers = await auth_for(user)
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    assert (await api.get(ME, headers=headers)).status_code == 401


async def test_login_hashing_does_not_block_the_event_loop(api, make_user, settings):
    """PBKDF2 at production cost runs in a worker thread: /healthz answers meanwhile."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    await make_user(username="pete")
    hashed_once = await sync_to_async(User.objects.get)(username="pete")
    assert hashed_once.password.startswith("pbkdf2_sha256$")

    login = asyncio.create_task(api.post(LOGIN, json={"username": "pete", "password": PASSWORD}))
    await asyncio.sleep(0.02)  # let the login reach the hasher
    health = await api.get("/healthz")
    # Ordering, not wall-clock: a hash run on the event loop would finish the login first.
    assert not login.done(), "/healthz waited for the password hash"
    login_response = await login
    assert health.status_code == 200
    assert login_response.status_code == 200


async def test_throttles_login_per_username(api, make_user, throttle_rates):
    throttle_rates(login_username="3/min")
    await make_user(username="quinn")
    statuses = []
    for _ in range(4):
        response = await api.post(LOGIN, json={"username": "Quinn", "password": "wrong"})
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    assert int(response.headers["Retry-After"]) > 0
    assert "detail" in response.json()
    # Another username is not affected.
    other = await api.post(LOGIN, json={"username": "someone", "password": "wrong"})
    assert other.status_code == 401


async def test_throttles_register_per_ip(api, throttle_rates):
    throttle_rates(register_ip="2/min")
    statuses = []
    for n in range(3):
        response = await api.post(
            REGISTER, json={"username": f"r{n}", "email": f"r{n}@ex.com", "password": PASSWORD}
        )
        statuses.append(response.status_code)
    assert statuses == [201, 201, 429]
    assert await _count() == 2


async def test_a_verified_token_is_remembered_but_still_expires(api, make_user):
    from datetime import timedelta

    from accounts.tokens import tokens_for_user

    user = await make_user(username="rita")
    pair = await sync_to_async(tokens_for_user)(user)
    token = AccessToken(pair["access"])
    token.set_exp(lifetime=timedelta(seconds=2))  # exp is whole seconds: valid 1 to 2 s
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.get(ME, headers=headers)).status_code == 200
    assert (await api.get(ME, headers=headers)).status_code == 200  # from memory
    await asyncio.sleep(2.1)
    assert (await api.get(ME, headers=headers)).status_code == 401


async def test_a_remembered_token_does_not_vouch_for_a_tampered_copy(api, make_user):
    await make_user(username="sam")
    pair = (await api.post(LOGIN, json={"username": "sam", "password": PASSWORD})).json()
    good = {"Authorization": f"Bearer {pair['access']}"}
    assert (await api.get(ME, headers=good)).status_code == 200
    header, _payload, signature = pair["access"].split(".")
    claims = jwt.decode(pair["access"], options={"verify_signature": False})
    forged = jwt.utils.base64url_encode(json.dumps({**claims, "user_id": 1}).encode()).decode()
    tampered = {"Authorization": f"Bearer {header}.{forged}.{signature}"}
    assert (await api.get(ME, headers=tampered)).status_code == 401


def test_account_services_raise_domain_errors_not_drf_exceptions():
    """accounts/services.py speaks common.errors, like courses/; the web layer renders them."""
    import ast
    from pathlib import Path

    from accounts import services

    tree = ast.parse(Path(services.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not {name for name in imported if name.startswith("rest_framework")}
    assert "common.errors" in imported


async def test_account_401s_carry_the_bearer_challenge_and_a_code(api, make_user):
    await make_user(username="wendy")
    login = await api.post(LOGIN, json={"username": "wendy", "password": "wrong"})
    refresh = await api.post(REFRESH, json={"refresh": "not.a.token"})
    logout = await api.post(LOGOUT, json={"refresh": "not.a.token"})
    assert login.status_code == refresh.status_code == logout.status_code == 401
    assert login.json() == {
        "detail": "No active account found with the given credentials.",
        "code": "authentication_failed",
    }
    assert refresh.json()["code"] == logout.json()["code"] == "token_not_valid"
    for response in (login, refresh, logout):
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


async def test_registration_conflicts_are_field_errors(api, make_user):
    await make_user(username="xena", email="xena@example.com")
    response = await api.post(
        REGISTER, json={"username": "xena", "email": "new@example.com", "password": "password"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "username": ["A user with that username already exists."],
        "password": ["This password is too common."],
    }
    assert await _count() == 1


async def test_logout_205_has_no_body_and_no_content_type(api, make_user):
    await make_user(username="nina")
    pair = (await api.post(LOGIN, json={"username": "nina", "password": PASSWORD})).json()
    response = await api.post(LOGOUT, json={"refresh": pair["refresh"]})
    assert response.status_code == 205
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers.get("content-length", "0") == "0"


def test_verified_token_cache_evicts_safely_across_threads(monkeypatch):
    """Thread A is paused between picking the oldest entry and deleting it while thread B
    remembers another token; unlocked, B evicted that entry first and A raised KeyError."""
    from accounts import authentication

    a_paused = threading.Event()
    b_done = threading.Event()
    errors: list[BaseException] = []

    class PausingDict(dict):
        def __delitem__(self, key):
            if threading.current_thread().name == "A":
                a_paused.set()
                b_done.wait(timeout=2)  # with the lock, B waits for A instead
            super().__delitem__(key)

    cache = PausingDict({b"oldest": "token0"})
    monkeypatch.setattr(authentication, "_verified", cache)
    monkeypatch.setattr(authentication, "VERIFIED_TOKENS_MAX", 1)

    def run(raw: bytes, done: threading.Event | None = None) -> None:
        try:
            authentication._remember(raw, "token")
        except BaseException as exc:
            errors.append(exc)
        if done is not None:
            done.set()

    a = threading.Thread(target=run, args=(b"a",), name="A")
    a.start()
    assert a_paused.wait(timeout=30)
    b = threading.Thread(target=run, args=(b"b", b_done), name="B")
    b.start()
    a.join(timeout=30)
    b.join(timeout=30)
    assert errors == []
    assert list(cache) == [b"b"]
