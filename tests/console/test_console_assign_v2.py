"""The assign panel over bulk assignment v2: usernames and emails, a due date, a real dry
run before the confirmation, waitlist badges, and the stored assignment history."""

import re
from datetime import UTC, datetime, timedelta

from courses import assignment, selectors
from tests.console.conftest import csrf_from, post_form


async def test_pasted_emails_with_a_due_date_preview_then_assign_with_waitlist_badges(
    api, console_as, create_course, make_user
):
    course = await create_course(capacity=2)
    await console_as(is_staff=True)
    users = [await make_user(email=f"learner{i}@corp.example") for i in range(3)]
    named = await make_user(username="by_name")
    pasted = "\n".join(u.email for u in users) + "\nby_name\nnobody@corp.example"
    due = (datetime.now(UTC) + timedelta(days=30)).replace(second=0, microsecond=0)
    due_text = f"{due:%Y-%m-%dT%H:%M}"
    assign = f"/console/manage/courses/{course['id']}/assign/"
    preview = await post_form(
        api, assign, {"action": "preview", "pasted": pasted, "due_at": due_text}
    )
    assert preview.status_code == 200
    statuses = re.findall(r'data-status="([a-z_]+)"', preview.text)
    assert statuses == ["enrolled", "enrolled", "waitlisted", "waitlisted", "not_found"]
    assert "Confirm and assign 4 users" in preview.text
    # The dry run wrote nothing.
    for user in [*users, named]:
        assert await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id) is None
    assert (await assignment.assignment_list(course_id=course["id"], limit=5, offset=0))[0] == 0
    confirm = await api.post(
        f"{assign}confirm/",
        data={"pasted": pasted, "due_at": due_text, "csrfmiddlewaretoken": csrf_from(preview.text)},
    )
    assert confirm.status_code == 302
    report = (await api.get(confirm.headers["Location"])).text
    assert re.findall(r'data-status="([a-z_]+)"', report) == statuses
    first = await selectors.enrollment_in_course(course_id=course["id"], user_id=users[0].id)
    assert first.status == "active"
    assert first.due_at == due
    last = await selectors.enrollment_in_course(course_id=course["id"], user_id=named.id)
    assert last.status == "waitlisted"
    history = (await api.get(f"/console/manage/courses/{course['id']}/assignments/")).text
    assert confirm.headers["Location"] in history


async def test_confirming_an_archived_course_says_why_and_writes_nothing(
    api, console_as, create_course, make_user
):
    course = await create_course()
    await console_as(is_staff=True)
    user = await make_user()
    assign = f"/console/manage/courses/{course['id']}/assign/"
    preview = await post_form(api, assign, {"action": "preview", "pasted": user.username})
    manage = f"/console/manage/courses/{course['id']}/"
    await post_form(api, f"{manage}status/", {"status": "archived"}, page=manage)
    confirm = await api.post(
        f"{assign}confirm/",
        data={"pasted": user.username, "csrfmiddlewaretoken": csrf_from(preview.text)},
    )
    assert confirm.status_code == 302
    assert "archived" in (await api.get(manage)).text
    assert await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id) is None


async def test_assignment_history_is_admin_only_and_has_an_empty_state(
    api, console_as, create_course
):
    course = await create_course()
    url = f"/console/manage/courses/{course['id']}/assignments/"
    assert (await api.get(url)).headers["Location"].startswith("/console/login/")
    await console_as()
    assert (await api.get(url)).status_code == 403
    await api.post(
        "/console/logout/",
        data={"csrfmiddlewaretoken": csrf_from((await api.get("/console/my-training/")).text)},
    )
    await console_as(is_staff=True)
    page = await api.get(url)
    assert page.status_code == 200
    assert "No assignments yet" in page.text


def badges(html: str) -> list[str]:
    """The text of each status badge of a preview or report table, in order."""
    return re.findall(r'data-status="[a-z_]+">([^<]+)</span>', html)


async def test_waitlisted_users_show_their_queue_position_in_preview_and_report(
    api, console_as, create_course, make_user, regular
):
    """The preview places the dry run's waitlisted users after those already waiting; the
    report shows where they stand now (the queue moves on as seats free)."""
    course = await create_course(capacity=1)
    enroll = f"/api/courses/{course['id']}/enroll/"
    assert (await api.post(enroll, headers=regular[1])).status_code == 201  # the one seat
    await console_as(is_staff=True)
    first, second, third = [await make_user() for _ in range(3)]
    assign = f"/console/manage/courses/{course['id']}/assign/"
    pasted = f"{first.username}\n{second.username}"
    preview = await post_form(api, assign, {"action": "preview", "pasted": pasted})
    assert badges(preview.text) == ["Waitlisted #1", "Waitlisted #2"]
    confirm = await api.post(
        f"{assign}confirm/",
        data={"pasted": pasted, "csrfmiddlewaretoken": csrf_from(preview.text)},
    )
    report = confirm.headers["Location"]
    assert badges((await api.get(report)).text) == ["Waitlisted #1", "Waitlisted #2"]
    later = await post_form(api, assign, {"action": "preview", "pasted": third.username})
    assert badges(later.text) == ["Waitlisted #3"]  # behind the two already waiting
    assert (await api.delete(enroll, headers=regular[1])).status_code == 200
    # The seat went to the head of the queue: the report says where the others stand now.
    assert badges((await api.get(report)).text) == ["Waitlisted", "Waitlisted #1"]
