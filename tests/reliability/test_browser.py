"""What a person opens first, in a real browser and offline: Swagger UI shows every
operation, ReDoc renders, and the admin login page is styled, in development (DEBUG, no
collectstatic) and in production (DEBUG off, `collectstatic` into STATIC_ROOT).

Debian's `chromium` is driven through Playwright (`.ci/run` installs it when missing;
browsers are never downloaded). Every request to anything but 127.0.0.1 is aborted, so
a page that needs the internet fails here as it would offline.
"""

import shutil
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.reliability.chromium import launch, localhost_only, needs_chromium
from tests.reliability.conftest import processes
from tests.reliability.servers import PROJECT_ROOT, UvicornServer, server_env

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [processes, needs_chromium]
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
# ReDoc's bundle shows Redocly's logo in its menu from their CDN, and hides it when it does
# not load: the one outside request a page makes, decorative and harmless offline.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module", params=["development", "production"])
def site(request, sqlite_template, standin_uri, tmp_path_factory):
    path, _ = sqlite_template
    workdir = tmp_path_factory.mktemp(request.param)
    db = workdir / "db.sqlite3"
    shutil.copyfile(path, db)
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"browser_{uuid.uuid4().hex[:8]}",
        STATIC_ROOT=str(workdir / "static"),
    )
    if request.param == "development":
        env["DEBUG"] = "1"  # the apps' static directories, no collectstatic
    else:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            timeout=120,
        )
    with UvicornServer(env) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = launch(driver)
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page(browser):
    """A page that can reach 127.0.0.1 only; `page.blocked` lists what it tried besides."""
    context = browser.new_context()
    page = context.new_page()
    localhost_only(page)
    page.statuses = {}
    page.on("response", lambda response: page.statuses.setdefault(response.url, response.status))
    yield page
    context.close()


def _failed(page) -> dict[str, int]:
    return {url: status for url, status in page.statuses.items() if status >= 400}


def _operations(server) -> int:
    schema = httpx.get(f"{server.url}/api/schema/", params={"format": "json"}, timeout=10).json()
    return sum(
        1 for operations in schema["paths"].values() for method in operations if method in METHODS
    )


def test_root_leads_to_swagger_ui_showing_every_operation(site, offline_page):
    expected = _operations(site)
    assert expected >= 15
    response = offline_page.goto(f"{site.url}/")
    assert response.status == 200
    assert offline_page.url == f"{site.url}/api/docs/"
    offline_page.wait_for_function(
        f"document.querySelectorAll('.opblock').length >= {expected}", timeout=30_000
    )
    assert offline_page.locator(".opblock").count() == expected
    assert offline_page.blocked == []
    assert _failed(offline_page) == {}


def test_redoc_renders_every_operation_offline(site, offline_page):
    expected = _operations(site)
    offline_page.goto(f"{site.url}/api/redoc/")
    # ReDoc gives each operation a section `operation/<operationId>`.
    sections = "[data-section-id^='operation/']"
    offline_page.wait_for_function(
        f'document.querySelectorAll("{sections}").length >= {expected}', timeout=30_000
    )
    assert offline_page.locator(sections).count() == expected
    assert set(offline_page.blocked) <= {REDOC_LOGO}
    assert _failed(offline_page) == {}


def test_admin_login_is_styled(site, offline_page):
    offline_page.goto(f"{site.url}/admin/login/")
    sheets = offline_page.eval_on_selector_all(
        "link[rel=stylesheet]", "links => links.map(link => link.href)"
    )
    assert len(sheets) >= 3
    assert {url: offline_page.statuses.get(url) for url in sheets} == dict.fromkeys(sheets, 200)
    # Unstyled, the header is transparent; admin/css/base.css paints it.
    header = offline_page.eval_on_selector(
        "#header", "element => getComputedStyle(element).backgroundColor"
    )
    assert header not in ("rgba(0, 0, 0, 0)", "transparent")
    assert offline_page.blocked == []
