"""Course prices: ASCII decimal strings or JSON numbers meaning the same, never -0."""

import pytest

COURSES = "/api/courses/"
VALID = {"course_title": "Pricing", "course_description": "", "display_price": None}


def _body(amount) -> dict:
    return {**VALID, "display_price": {"amount": amount, "currency": "USD"}}


@pytest.mark.parametrize(
    "amount",
    [
        "-0",
        "-0.00",
        "-0.0",
        -0.0,
        "\u0661\u0662",  # Arabic-Indic 12
        "\uff11\uff12",  # full-width 12
        "1_000",
        "1e3",
        "+1",
        " 1",
        "1.",
        ".5",
        "0x10",
        "12345678901",  # 11 digits before the point
        1e16,
        0.30000000000000004,
        True,
        None,
        [],
    ],
)
async def test_odd_amounts_are_refused(api, admin, mongo_db, amount):
    response = await api.post(COURSES, json=_body(amount), headers=admin[1])
    assert response.status_code == 400, response.text
    assert "amount" in response.json()["display_price"]
    assert await mongo_db.courses.count_documents({}) == 0


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0", "0.00"),
        ("0.5", "0.50"),
        ("1234567890.99", "1234567890.99"),
        (12, "12.00"),
        (19.99, "19.99"),
        (0, "0.00"),
        (7.0, "7.00"),
    ],
)
async def test_plain_amounts_are_accepted(api, admin, amount, shown):
    response = await api.post(COURSES, json=_body(amount), headers=admin[1])
    assert response.status_code == 201, response.text
    assert response.json()["display_price"]["amount"] == shown
