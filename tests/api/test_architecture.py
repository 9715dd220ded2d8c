"""Layering rules from the foundation issue, checked on the source tree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER_PACKAGES = {"pymongo", "motor", "bson"}
# Only the MongoDB layer and the repositories may speak to the driver.
# courses/idempotency_repository.py: the Idempotency-Key records are their own collection
# with their own lifecycle (not courses or enrollments), so their queries have their own
# repository beside courses/repository.py rather than inside it. Stored assignment reports
# likewise (courses/assignment_repository.py), and assignment jobs, their input chunks and
# their results (courses/job_repository.py).
ALLOWED = {
    "courses/repository.py",
    "courses/idempotency_repository.py",
    "courses/assignment_repository.py",
    "courses/job_repository.py",
}


def _modules():
    for package in ("asgi_app", "accounts", "console", "courses"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in ALLOWED and "/migrations/" not in rel:
                yield rel


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", list(_modules()))
def test_no_driver_imports_outside_the_mongo_layer(module):
    assert not _imported_roots(ROOT / module) & DRIVER_PACKAGES


PRODUCT = ("asgi_app", "accounts", "common", "console", "courses", "mongo")
TOOLING = {"standin", "devstack", "bench", "loadtest", "tests", "mockupdb", "mongomock"}


def _product_modules():
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "/migrations/" not in path.as_posix():
                yield path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("module", list(_product_modules()))
def test_product_code_never_imports_tooling(module):
    # The production image ships only the product packages: an import of the stand-in,
    # the benchmark or the tests would fail there.
    assert not _imported_roots(ROOT / module) & TOOLING


@pytest.mark.parametrize(
    "module", [m for m in _product_modules() if m.startswith(("mongo/", "common/"))]
)
def test_lower_layers_never_import_the_web_layer(module):
    # Dependencies point down: the MongoDB client and the neutral module raise domain errors
    # from `common.errors`, never by reaching up into `asgi_app`.
    assert "asgi_app" not in _imported_roots(ROOT / module)
