"""The learner's side of the enrollment lifecycle in the console: status, waitlist
position, due date, overdue first, and withdrawing (checked through the selectors)."""

from datetime import UTC, datetime, timedelta

from courses import assignment, selectors, services
from tests.console.conftest import post_form


async def test_learner_withdraws_from_the_course_page(api, console_as, create_course):
    course = await create_course(course_title="Fire Safety")
    user = await console_as()
    course_url = f"/console/courses/{course['id']}/"
    await post_form(api, f"{course_url}enroll/", {}, page=course_url)
    assert "Withdraw" in (await api.get(course_url)).text
    response = await post_form(api, f"{course_url}withdraw/", {"back": "course"}, page=course_url)
    assert response.status_code == 302
    assert response.headers["Location"] == course_url
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id)
    assert enrollment.status == "withdrawn"
    page = (await api.get(course_url)).text
    assert "You have withdrawn from this course" in page
    assert "Enroll now" in page  # a withdrawn learner may come back
    report = await selectors.course_report(course_id=course["id"])
    assert report.counts["active"] == 0


async def test_waitlisted_learner_sees_the_position_and_may_leave(
    api, console_as, create_course, make_user
):
    course = await create_course(capacity=1)
    first = await make_user()
    await services.enrollment_create(
        course_id=course["id"], user_id=first.id, username=first.username
    )
    user = await console_as()
    course_url = f"/console/courses/{course['id']}/"
    await post_form(api, f"{course_url}enroll/", {}, page=course_url)
    page = (await api.get(course_url)).text
    assert 'data-status="waitlisted"' in page
    assert "Waitlist position 1" in page
    assert "Leave the waitlist" in page
    training = (await api.get("/console/my-training/")).text
    assert "position 1" in training
    left = await post_form(
        api, f"{course_url}withdraw/", {"back": "training"}, page="/console/my-training/"
    )
    assert left.headers["Location"] == "/console/my-training/"
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id)
    assert enrollment.status == "withdrawn"


async def test_assigned_training_shows_why_it_cannot_be_withdrawn_and_refuses(
    api, console_as, create_course, admin
):
    course = await create_course(course_title="Data Protection")
    user = await console_as()
    due = datetime.now(UTC) + timedelta(days=7)
    await assignment.assignment_create(
        course_id=course["id"], user_id=user.id, admin_id=admin[0].id, due_at=due
    )
    course_url = f"/console/courses/{course['id']}/"
    page = (await api.get(course_url)).text
    assert "An admin assigned this training" in page
    assert f"{due:%-d %b %Y}" in page  # the due date
    assert f"{course_url}withdraw/" not in page
    # A hand-made POST is refused by the service and writes nothing.
    refused = await post_form(api, f"{course_url}withdraw/", {"back": "course"}, page=course_url)
    assert refused.status_code == 302
    assert "only an admin can withdraw it" in (await api.get(course_url)).text
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id)
    assert enrollment.status == "active"


async def test_completed_training_cannot_be_withdrawn(api, console_as, create_course):
    course = await create_course()
    user = await console_as()
    await services.enrollment_create(
        course_id=course["id"], user_id=user.id, username=user.username
    )
    await services.enrollment_complete(course_id=course["id"], user_id=user.id)
    course_url = f"/console/courses/{course['id']}/"
    page = (await api.get(course_url)).text
    assert "Completed training stays on your record" in page
    refused = await post_form(api, f"{course_url}withdraw/", {}, page=course_url)
    assert refused.headers["Location"] == "/console/my-training/"
    assert "it can no longer be withdrawn" in (await api.get("/console/my-training/")).text
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id)
    assert enrollment.status == "completed"


async def test_my_training_lists_overdue_items_first(api, console_as, create_course, admin):
    late = await create_course(course_title="Late Course")
    fresh = await create_course(course_title="Fresh Course")
    user = await console_as()
    past = datetime.now(UTC) - timedelta(days=2)
    await assignment.assignment_create(
        course_id=late["id"], user_id=user.id, admin_id=admin[0].id, due_at=past
    )
    await services.enrollment_create(course_id=fresh["id"], user_id=user.id, username=user.username)
    page = (await api.get("/console/my-training/")).text
    overdue = page[page.index('data-testid="overdue"') : page.index("All training")]
    assert "Late Course" in overdue
    assert "Fresh Course" not in overdue
    assert "Overdue (1)" in page
    # Everything is still listed below, newest first.
    rest = page[page.index("All training") :]
    assert rest.index("Fresh Course") < rest.index("Late Course")


async def test_withdraw_needs_a_signed_in_user_post_and_csrf(api, console_as, create_course):
    course = await create_course()
    url = f"/console/courses/{course['id']}/withdraw/"
    anonymous = await post_form(api, url, {}, page="/console/login/")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/console/login/")
    user = await console_as()
    await services.enrollment_create(
        course_id=course["id"], user_id=user.id, username=user.username
    )
    assert (await api.get(url)).status_code == 405
    no_token = await api.post(url)
    assert no_token.status_code == 403
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id)
    assert enrollment.status == "active"
