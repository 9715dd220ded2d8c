"""Throttle counters shared through Redis (REDIS_URL), against the local Redis server."""

import socket
import uuid

import pytest
import redis

REDIS = "redis://127.0.0.1:6379/15"
LOGIN = "/api/auth/login/"


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


@pytest.fixture
def throttled(throttle_rates):
    return throttle_rates(login_username="3/min")


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
async def test_login_throttle_counts_in_redis(api, make_user, throttled):
    prefix = f"throttle-test-{uuid.uuid4().hex}"
    throttled.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS,
            "KEY_PREFIX": prefix,
        }
    }
    await make_user(username="tina")
    statuses = [
        (await api.post(LOGIN, json={"username": "tina", "password": "wrong"})).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    server = redis.Redis.from_url(REDIS)
    keys = server.keys(f"{prefix}*")
    assert keys, "the counters live in Redis, where every worker sees them"
    server.delete(*keys)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_throttle_store_lets_logins_through(api, make_user, throttled):
    throttled.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        }
    }
    await make_user(username="uma")
    response = await api.post(LOGIN, json={"username": "uma", "password": "correct-horse-battery"})
    assert response.status_code == 200
