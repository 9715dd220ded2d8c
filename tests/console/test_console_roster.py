"""The admin course page: the roster (cursor-paged, filtered, searched, exported as CSV by
the console itself) and the report's counts drawn as an SVG bar chart."""

import re

from console import views
from courses import assignment, services
from tests.console.conftest import csrf_from


def _names(page: str) -> list[str]:
    return re.findall(r"</span> (\w+)</td>", page)


def _next(page: str) -> str:
    found = re.search(r'href="\?([^"]*cursor=[0-9a-f]{24}[^"]*)" rel="next"', page)
    return found.group(1).replace("&amp;", "&")


async def _assign(course_id: str, users, admin_id: int) -> None:
    await assignment.assignment_bulk_create(
        course_id=course_id,
        items=[assignment.Requested(assignment.USER_ID, u.id) for u in users],
        admin_id=admin_id,
    )


async def test_roster_pages_by_cursor_filters_and_searches(
    api, console_as, create_course, make_user, monkeypatch
):
    course = await create_course(capacity=3)
    admin = await console_as(is_staff=True)
    users = [await make_user(username=f"crew{i:02d}") for i in range(5)]
    await _assign(course["id"], users, admin.id)  # 3 active, 2 waitlisted
    manage = f"/console/manage/courses/{course['id']}/"
    monkeypatch.setattr(views, "ROSTER_PER_PAGE", 2)
    first = (await api.get(manage)).text
    assert _names(first) == ["crew00", "crew01"]
    second = (await api.get(f"{manage}?{_next(first)}")).text
    assert _names(second) == ["crew02", "crew03"]
    third = (await api.get(f"{manage}?{_next(second)}")).text
    assert _names(third) == ["crew04"]
    assert 'rel="next"' not in third
    monkeypatch.setattr(views, "ROSTER_PER_PAGE", 1)
    waiting_first = (await api.get(manage, params={"status": "waitlisted"})).text
    assert "status=waitlisted" in _next(waiting_first)  # the next page keeps the filter
    waiting_second = (await api.get(f"{manage}?{_next(waiting_first)}")).text
    assert _names(waiting_second) == ["crew04"]
    monkeypatch.setattr(views, "ROSTER_PER_PAGE", 50)
    waiting = (await api.get(manage, params={"status": "waitlisted"})).text
    assert re.findall(r'<td><span class="badge badge-(\w+)"', waiting) == ["waitlisted"] * 2
    assert "#1" in waiting
    found = (await api.get(manage, params={"search": "CREW04"})).text
    assert _names(found) == ["crew04"]
    nobody = (await api.get(manage, params={"search": "zzz"})).text
    assert "Nobody on the roster matches these filters" in nobody
    bogus = await api.get(manage, params={"cursor": "not-a-cursor", "status": "nope"})
    assert bogus.status_code == 200


async def test_report_chart_shows_the_counts(api, console_as, create_course, make_user):
    course = await create_course(capacity=2)
    admin = await console_as(is_staff=True)
    users = [await make_user() for _ in range(3)]
    await _assign(course["id"], users, admin.id)
    await services.enrollment_complete(course_id=course["id"], user_id=users[0].id)
    page = (await api.get(f"/console/manage/courses/{course['id']}/")).text
    chart = page[page.index('data-testid="report-chart"') : page.index("</svg>")]
    counts = dict(re.findall(r'data-status="(\w+)">(\d+)<', chart))
    assert counts == {
        "active": "1",
        "waitlisted": "1",
        "completed": "1",
        "withdrawn": "0",
        "overdue": "0",
    }
    assert "Active: 1; Waitlisted: 1; Completed: 1; Withdrawn: 0; Overdue: 0" in chart
    assert "50%" in page  # completion rate: 1 of 2 members


async def test_roster_csv_is_streamed_by_the_console_with_the_filters(
    api, console_as, create_course, make_user
):
    course = await create_course(capacity=1)
    admin = await console_as(is_staff=True)
    users = [await make_user(username=f"csv{i}") for i in range(2)]
    await _assign(course["id"], users, admin.id)
    url = f"/console/manage/courses/{course['id']}/roster.csv"
    everything = await api.get(url)
    assert everything.status_code == 200
    assert everything.headers["Content-Type"].startswith("text/csv")
    lines = everything.text.splitlines()
    assert lines[0] == "user_id,username,status,enrolled_at,due_at,completed_at"
    assert [line.split(",")[1:3] for line in lines[1:]] == [
        ["csv0", "active"],
        ["csv1", "waitlisted"],
    ]
    only_waiting = (await api.get(url, params={"status": "waitlisted"})).text.splitlines()
    assert [line.split(",")[1] for line in only_waiting[1:]] == ["csv1"]
    missing = await api.get(f"/console/manage/courses/{'0' * 24}/roster.csv")
    assert missing.status_code == 404


async def test_roster_csv_is_admin_only(api, console_as, create_course):
    course = await create_course()
    url = f"/console/manage/courses/{course['id']}/roster.csv"
    assert (await api.get(url)).headers["Location"].startswith("/console/login/")
    await console_as()
    assert (await api.get(url)).status_code == 403
    assert "sessionid" in api.cookies
    assert csrf_from((await api.get("/console/my-training/")).text)
