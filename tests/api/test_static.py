"""Docs UIs and the admin's assets come from the project itself, answered before Django."""

import re

import pytest

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


async def test_root_redirects_to_the_docs(api):
    response = await api.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/docs/"


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
async def test_docs_pages_load_only_local_pinned_assets(api, page):
    response = await api.get(page)
    assert response.status_code == 200
    assets = ASSET.findall(response.text)
    assert assets, "the page references its scripts and styles"
    assert [a for a in assets if not a.startswith("/static/drf_spectacular_sidecar/")] == []
    for asset in assets:
        served = await api.get(asset)
        assert served.status_code == 200, asset
        assert served.content


async def test_static_files_are_answered_before_django(api):
    css = await api.get("/static/admin/css/base.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    # Django's first middleware stamps every response it makes; this one never reached it.
    assert "X-Request-ID" not in css.headers
    assert "X-Request-ID" in (await api.get("/healthz")).headers


async def test_unknown_static_path_falls_through_to_a_404(api):
    response = await api.get("/static/admin/css/no-such-file.css")
    assert response.status_code == 404
    assert "X-Request-ID" in response.headers
