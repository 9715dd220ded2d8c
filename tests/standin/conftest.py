"""Fixtures for the stand-in's own tests: a real server process and the real driver.

These tests exercise only ``standin`` and must run without Django
(``pytest tests/standin -p no:django``), so the project-wide autouse fixtures of
``tests/conftest.py`` that need Django are overridden here by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from standin.process import StandinProcess


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with StandinProcess() as process:
        yield process


@pytest.fixture(scope="session")
def mongo_server(standin: StandinProcess) -> StandinProcess:
    """Overrides the project fixture (which configures Django) for these tests."""
    return standin


@pytest.fixture
def _test_settings() -> None:
    """Overrides the project's Django settings fixture: nothing to configure here."""


@pytest.fixture(scope="session")
def _close_mongo_client() -> None:
    """Overrides the project's client cleanup: these tests own their clients."""


@pytest.fixture(scope="session")
def client(standin: StandinProcess) -> Iterator[MongoClient]:
    mongo: MongoClient = MongoClient(standin.uri, tz_aware=True)
    yield mongo
    mongo.close()


@pytest.fixture
def db(client: MongoClient) -> Iterator[Database]:
    """A fresh database per test, dropped afterwards."""
    name = f"standin_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
