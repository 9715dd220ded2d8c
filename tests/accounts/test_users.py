import pytest

URL = "/api/users/"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 401),
        ("regular", 403),
        ("inactive_staff", 403),
        ("staff", 200),
        ("superuser", 200),
    ],
)
async def test_user_list_permissions(api, role_headers, role, expected):
    response = await api.get(URL, headers=await role_headers(role))
    assert response.status_code == expected
    assert "detail" in response.json() or expected == 200


async def test_user_list_is_ordered_paginated_and_searchable(api, admin, make_user):
    _, headers = admin
    await make_user(username="zed", email="zed@corp.example", phone="+15550001111")
    for n in range(25):
        await make_user(username=f"bulk{n:02d}")
    page = (await api.get(URL, headers=headers)).json()
    assert page["count"] == 27
    assert len(page["results"]) == 20
    ids = [u["id"] for u in page["results"]]
    assert ids == sorted(ids)
    assert page["previous"] is None
    assert "offset=20" in page["next"]
    last = (await api.get(URL, params={"limit": 20, "offset": 20}, headers=headers)).json()
    assert len(last["results"]) == 7
    assert last["next"] is None
    assert (await api.get(URL, params={"limit": 1000}, headers=headers)).json()[
        "results"
    ].__len__() == 27
    for term in ("ZED", "corp.example", "555000"):
        found = (await api.get(URL, params={"search": term}, headers=headers)).json()
        assert [u["username"] for u in found["results"]] == ["zed"], term
    assert "password" not in str(page)


async def test_user_list_tolerates_odd_query_values(api, admin):
    _, headers = admin
    for params in ({"limit": "abc"}, {"offset": "-5"}, {"search": "a\x00b"}, {"limit": "10**99"}):
        response = await api.get(URL, params=params, headers=headers)
        assert response.status_code == 200, params


async def test_demoted_admin_token_is_refused(api, make_user, auth_for):
    from accounts.models import User

    user = await make_user(is_staff=True)
    headers = await auth_for(user)
    await User.objects.filter(pk=user.pk).aupdate(is_staff=False)
    assert (await api.get(URL, headers=headers)).status_code == 403
