import re

import pytest

PASSWORD = "correct-horse-battery"  # tests/conftest.py's make_user default
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_from(html: str) -> str:
    return CSRF_FIELD.search(html).group(1)


async def sign_in(api, username: str, password: str = PASSWORD, *, next_url: str = ""):
    page = await api.get("/console/login/")
    data = {"username": username, "password": password, "csrfmiddlewaretoken": csrf_from(page.text)}
    if next_url:
        data["next"] = next_url
    return await api.post("/console/login/", data=data)


async def post_form(api, url: str, data: dict, *, page: str | None = None):
    """POST a console form (a list value repeats its field) with the CSRF token of `page`
    (default: the form's own page)."""
    html = (await api.get(page or url)).text
    return await api.post(url, data={**data, "csrfmiddlewaretoken": csrf_from(html)})


@pytest.fixture
def console_as(api, make_user):
    """Sign a new user with these fields in on the `api` client (a session cookie)."""

    async def login(**fields):
        user = await make_user(**fields)
        response = await sign_in(api, user.username)
        assert response.status_code == 302, response.text[:300]
        return user

    return login
