"""Throttles on login, refresh and the Django admin login; and what they do with bad bodies."""

import logging
import re

import jwt
from django.conf import settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

PASSWORD = "correct-horse-battery"
LOGIN = "/api/auth/login/"
REFRESH = "/api/auth/refresh/"
ADMIN_LOGIN = "/admin/login/"
JSON = {"Content-Type": "application/json"}


async def _rows() -> tuple[int, int]:
    return await OutstandingToken.objects.acount(), await BlacklistedToken.objects.acount()


# Malformed bodies


async def test_malformed_login_json_is_a_parse_error_counted_per_ip(
    api, make_user, throttle_rates, caplog
):
    """It used to answer "username: required" and log that the counters were down."""
    throttle_rates(login_ip="2/min")
    await make_user(username="nina")
    with caplog.at_level(logging.WARNING):
        first = await api.post(LOGIN, content=b'{"username": "nina",', headers=JSON)
        second = await api.post(LOGIN, content=b"{not json", headers=JSON)
    assert first.status_code == second.status_code == 400
    assert first.json()["detail"].startswith("JSON parse error")
    assert "username" not in first.json()
    assert "throttle counters unavailable" not in caplog.text
    # Both counted against the address: the next login, even a correct one, waits.
    third = await api.post(LOGIN, json={"username": "nina", "password": PASSWORD})
    assert third.status_code == 429
    assert await _rows() == (0, 0)


async def test_malformed_refresh_json_is_a_parse_error(api, throttle_rates):
    throttle_rates(refresh_ip="1/min")
    response = await api.post(REFRESH, content=b'{"refresh": ', headers=JSON)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")
    assert (await api.post(REFRESH, json={"refresh": "x"})).status_code == 429


# Refresh


async def test_refresh_is_throttled_per_user(api, make_user, throttle_rates):
    throttle_rates(refresh_user="2/min")
    await make_user(username="otto")
    pair = (await api.post(LOGIN, json={"username": "otto", "password": PASSWORD})).json()
    statuses = []
    for _ in range(3):
        response = await api.post(REFRESH, json={"refresh": pair["refresh"]})
        statuses.append(response.status_code)
        if response.status_code == 200:
            pair = response.json()
    assert statuses == [200, 200, 429]
    assert int(response.headers["Retry-After"]) > 0
    # The refused rotation wrote nothing: 1 login + 2 rotations, 2 consumed tokens.
    assert await _rows() == (3, 2)


async def test_refresh_is_throttled_per_ip(api, throttle_rates):
    throttle_rates(refresh_ip="3/min")
    statuses = [
        (await api.post(REFRESH, json={"refresh": f"garbage{n}"})).status_code for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


async def test_forged_refresh_tokens_do_not_spend_a_victims_budget(api, make_user, throttle_rates):
    throttle_rates(refresh_user="2/min")
    victim = await make_user(username="pia")
    pair = (await api.post(LOGIN, json={"username": "pia", "password": PASSWORD})).json()
    claims = jwt.decode(pair["refresh"], options={"verify_signature": False})
    forged = jwt.encode({**claims, "jti": "x"}, "not-the-key-" * 4, algorithm="HS256")
    for _ in range(5):
        assert (await api.post(REFRESH, json={"refresh": forged})).status_code == 401
    assert claims["user_id"] == victim.id
    assert (await api.post(REFRESH, json={"refresh": pair["refresh"]})).status_code == 200
    assert settings.SIMPLE_JWT["SIGNING_KEY"] != "not-the-key-" * 4


# The Django admin login


async def _admin_login(api, username: str, password: str):
    page = await api.get(ADMIN_LOGIN)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return await api.post(
        ADMIN_LOGIN,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
    )


async def test_admin_login_is_throttled_per_username(api, make_user, throttle_rates):
    """34 wrong passwords in 18 s were let through, then the right one got in."""
    throttle_rates(login_username="3/min")
    await make_user(username="root", is_staff=True, is_superuser=True)
    for _ in range(3):
        response = await _admin_login(api, "root", "wrong")
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.text
    refused = await _admin_login(api, "ROOT", PASSWORD)  # any spelling: one counter
    assert refused.status_code == 200
    assert re.search(r"Too many login attempts. Try again in \d+ seconds.", refused.text)
    assert "sessionid" not in api.cookies
    # The API login shares the counter: guesses cannot alternate between the two doors.
    api_login = await api.post(LOGIN, json={"username": "root", "password": PASSWORD})
    assert api_login.status_code == 429


async def test_admin_login_is_throttled_per_ip(api, make_user, throttle_rates):
    throttle_rates(login_ip="3/min")
    await make_user(username="sysop", is_staff=True)
    for name in ("a", "b", "c"):
        assert "Too many" not in (await _admin_login(api, name, "wrong")).text
    refused = await _admin_login(api, "sysop", PASSWORD)
    assert "Too many login attempts" in refused.text
    assert "sessionid" not in api.cookies


async def test_admin_login_within_the_limits_logs_in(api, make_user, throttle_rates):
    throttle_rates(login_username="3/min")
    await make_user(username="keeper", is_staff=True)
    response = await _admin_login(api, "Keeper", PASSWORD)
    assert response.status_code == 302
    assert "sessionid" in api.cookies
