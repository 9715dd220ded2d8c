"""Layering rules from the foundation issue, checked on the source tree."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER_PACKAGES = {"pymongo", "motor", "bson"}
# Only the MongoDB layer and the repositories may speak to the driver.
ALLOWED = {"courses/repository.py"}


def _modules():
    for package in ("asgi_app", "accounts", "courses"):
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
