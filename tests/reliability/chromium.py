"""Debian's chromium under Playwright, offline: what the browser tests share.

`.ci/run` installs `chromium` when it is missing; Playwright never downloads a browser.
"""

import shutil
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)",
)


def launch(driver):
    return driver.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )


def localhost_only(page) -> None:
    """Abort every request of `page` to anything but 127.0.0.1; `page.blocked` lists them,
    so a page that needs the internet fails here as it would offline."""
    page.blocked = []

    def route(request_route):
        if urlsplit(request_route.request.url).hostname == "127.0.0.1":
            request_route.continue_()
        else:
            page.blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
