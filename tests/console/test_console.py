"""The web console over the ASGI app: sign-in, permissions, CSRF, and each page's work
done through the services (checked through the API or the selectors, never the HTML
alone)."""

import re

from accounts.forms import THROTTLED
from courses import assignment, selectors
from tests.console.conftest import PASSWORD, csrf_from, post_form, sign_in

LEARNER_PAGES = ["/console/", "/console/courses/", "/console/my-training/"]
ADMIN_PAGES = ["/console/manage/courses/", "/console/manage/courses/new/"]


def _course_pages(course_id: str) -> tuple[list[str], list[str]]:
    learner = [f"/console/courses/{course_id}/"]
    manage = f"/console/manage/courses/{course_id}/"
    return learner, [manage, f"{manage}edit/", f"{manage}assign/"]


async def test_anonymous_visitors_are_sent_to_sign_in(api, create_course):
    course = await create_course()
    learner, admin = _course_pages(course["id"])
    for url in [*LEARNER_PAGES, *ADMIN_PAGES, *learner, *admin]:
        response = await api.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/console/login/?next=")


async def test_a_bearer_token_is_not_a_console_login(api, admin):
    response = await api.get("/console/manage/courses/", headers=admin[1])
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login/")


async def test_learners_get_403_on_admin_pages(api, console_as, create_course):
    course = await create_course()
    await console_as()
    learner, admin = _course_pages(course["id"])
    for url in [*LEARNER_PAGES[1:], *learner]:
        assert (await api.get(url)).status_code == 200, url
    for url in [*ADMIN_PAGES, *admin]:
        response = await api.get(url)
        assert response.status_code == 403, url
        assert "Admins only" in response.text
    # Nor may they post to an admin form.
    status_url = f"/console/manage/courses/{course['id']}/status/"
    refused = await post_form(api, status_url, {"status": "archived"}, page="/console/courses/")
    assert refused.status_code == 403
    assert (
        await selectors.course_get(course_id=course["id"], with_enrolled_users=False)
    ).status == "open"


async def test_sign_in_redirects_to_next_and_sign_out_ends_the_session(api, make_user):
    user = await make_user()
    response = await sign_in(api, user.username, next_url="/console/my-training/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/my-training/"
    assert "sessionid" in api.cookies
    page = await api.get("/console/my-training/")
    assert page.status_code == 200
    out = await api.post("/console/logout/", data={"csrfmiddlewaretoken": csrf_from(page.text)})
    assert out.status_code == 302
    assert (await api.get("/console/my-training/")).status_code == 302


async def test_wrong_password_is_refused_without_a_session(api, make_user):
    user = await make_user()
    response = await sign_in(api, user.username, "not-the-password")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.text
    assert "sessionid" not in api.cookies


async def test_sign_in_without_the_csrf_token_is_refused(api, make_user):
    user = await make_user()
    await api.get("/console/login/")  # the CSRF cookie, but no token in the form
    response = await api.post(
        "/console/login/", data={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "sessionid" not in api.cookies


async def test_console_posts_without_the_csrf_token_write_nothing(api, console_as, create_course):
    course = await create_course()
    user = await console_as()
    response = await api.post(f"/console/courses/{course['id']}/enroll/")
    assert response.status_code == 403
    assert await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id) is None


async def test_console_login_shares_the_api_login_throttle(api, make_user, throttle_rates):
    throttle_rates(login_username="3/min")
    user = await make_user(username="quinn")
    for _ in range(3):
        assert "Too many" not in (await sign_in(api, "quinn", "wrong")).text
    refused = await sign_in(api, "QUINN", PASSWORD)  # the right password, any spelling
    assert refused.status_code == 200
    assert re.search(THROTTLED.replace("%(wait)d", r"\d+"), refused.text)
    assert "sessionid" not in api.cookies
    api_login = await api.post(
        "/api/auth/login/", json={"username": user.username, "password": PASSWORD}
    )
    assert api_login.status_code == 429


async def test_learner_finds_a_course_enrolls_and_sees_it_in_my_training(
    api, console_as, create_course
):
    wanted = await create_course(course_title="Incident Response Basics")
    await create_course(course_title="Workplace Safety")
    user = await console_as()
    found = await api.get("/console/courses/", params={"q": "incid"})
    assert "Incident Response Basics" in found.text
    assert "Workplace Safety" not in found.text
    course_url = f"/console/courses/{wanted['id']}/"
    response = await post_form(api, f"{course_url}enroll/", {}, page=course_url)
    assert response.status_code == 302
    assert response.headers["Location"] == course_url
    enrollment = await selectors.enrollment_in_course(course_id=wanted["id"], user_id=user.id)
    assert enrollment is not None
    assert enrollment.source == "self"
    page = (await api.get(course_url)).text
    assert "You are enrolled" in page
    assert "Go to My training" in page
    training = (await api.get("/console/my-training/")).text
    assert "Incident Response Basics" in training
    again = await post_form(api, f"{course_url}enroll/", {}, page=course_url)
    assert again.status_code == 302
    assert "already enrolled" in (await api.get(course_url)).text


async def test_enrolling_in_an_archived_course_shows_why_and_writes_nothing(
    api, console_as, create_course
):
    course = await create_course(status="archived")
    user = await console_as()
    course_url = f"/console/courses/{course['id']}/"
    page = (await api.get(course_url)).text
    assert "archived" in page
    assert "Enroll now" not in page
    response = await post_form(api, f"{course_url}enroll/", {}, page=course_url)
    assert response.status_code == 302
    assert "is archived" in (await api.get(course_url)).text
    assert await selectors.enrollment_in_course(course_id=course["id"], user_id=user.id) is None


async def test_unknown_course_is_a_404_page(api, console_as):
    await console_as()
    response = await api.get("/console/courses/" + "0" * 24 + "/")
    assert response.status_code == 404
    assert "Course not found." in response.text


async def test_catalogue_pages_and_empty_states(api, console_as, create_course):
    await console_as()
    empty = await api.get("/console/courses/")
    assert "The catalogue is empty" in empty.text
    for n in range(13):
        await create_course(course_title=f"Course {n:02d}")
    first = (await api.get("/console/courses/")).text
    assert "1\u201312 of 13" in first
    assert 'rel="next"' in first
    second = (await api.get("/console/courses/", params={"page": "2"})).text
    assert "13\u201313 of 13" in second
    assert 'rel="prev"' in second
    assert "Course 00" in second  # newest first: the first created is last
    beyond = await api.get("/console/courses/", params={"page": "9"})
    assert beyond.status_code == 200
    assert "No courses on this page" in beyond.text
    nothing = await api.get("/console/courses/", params={"q": "zzz"})
    assert "No course matches" in nothing.text
    junk = await api.get("/console/courses/", params={"page": "x", "sort": "bogus"})
    assert junk.status_code == 200


COURSE_FORM = {
    "course_title": "Fire Warden Training",
    "course_description": "Evacuation drills.",
    "amount": "25.00",
    "currency": "EUR",
    "capacity": "12",
    "enrollment_opens_at": "",
    "enrollment_closes_at": "",
    "status": "open",
}


async def test_admin_creates_a_capped_course(api, console_as):
    await console_as(is_staff=True)
    response = await post_form(api, "/console/manage/courses/new/", COURSE_FORM)
    assert response.status_code == 302
    course_id = response.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    course = await selectors.course_get(course_id=course_id, with_enrolled_users=False)
    assert (course.course_title, course.capacity, course.currency) == (
        "Fire Warden Training",
        12,
        "EUR",
    )
    page = (await api.get(response.headers["Location"])).text
    assert "created" in page
    assert "Fire Warden Training" in page


async def test_invalid_course_form_is_a_400_and_writes_nothing(api, console_as):
    await console_as(is_staff=True)
    bad = {
        **COURSE_FORM,
        "amount": "-1",
        "capacity": "0",
        "enrollment_opens_at": "2030-01-02T00:00",
        "enrollment_closes_at": "2030-01-01T00:00",
    }
    response = await post_form(api, "/console/manage/courses/new/", bad)
    assert response.status_code == 400
    assert "Enter a decimal amount" in response.text
    assert "greater than or equal to 1" in response.text
    assert 'aria-invalid="true"' in response.text
    not_a_number = await post_form(
        api, "/console/manage/courses/new/", {**COURSE_FORM, "capacity": "ten"}
    )
    assert not_a_number.status_code == 400
    assert "whole number" in not_a_number.text
    count, _ = await selectors.course_list(limit=1, offset=0, status="all")
    assert count == 0


async def test_admin_edits_archives_and_reopens_a_course(api, console_as, create_course):
    course = await create_course(capacity=5)
    await console_as(is_superuser=True)
    manage = f"/console/manage/courses/{course['id']}/"
    form = (await api.get(f"{manage}edit/")).text
    assert 'value="Onboarding"' in form
    assert 'value="5"' in form
    edited = {**COURSE_FORM, "course_title": "Onboarding v2", "capacity": ""}
    response = await post_form(api, f"{manage}edit/", edited)
    assert response.status_code == 302
    changed = await selectors.course_get(course_id=course["id"], with_enrolled_users=False)
    assert (changed.course_title, changed.capacity) == ("Onboarding v2", None)
    archived = await post_form(api, f"{manage}status/", {"status": "archived"}, page=manage)
    assert archived.status_code == 302
    after = await selectors.course_get(course_id=course["id"], with_enrolled_users=False)
    assert after.status == "archived"
    bogus = await post_form(api, f"{manage}status/", {"status": "deleted"}, page=manage)
    assert bogus.status_code == 400
    await post_form(api, f"{manage}status/", {"status": "open"}, page=manage)
    reopened = await selectors.course_get(course_id=course["id"], with_enrolled_users=False)
    assert reopened.status == "open"


async def test_admin_assigns_picked_and_pasted_users_and_downloads_the_report(
    api, console_as, create_course, make_user
):
    course = await create_course()
    admin = await console_as(is_staff=True)
    picked = await make_user(username="picked_one", email="pick@corp.example")
    pasted = [await make_user() for _ in range(3)]
    gone = await make_user(is_active=False)
    assign = f"/console/manage/courses/{course['id']}/assign/"
    search = await api.get(assign, params={"q": "pick@corp"})
    assert "picked_one" in search.text
    ids = "\n".join(str(u.id) for u in pasted) + f", {gone.id}; 999999 {pasted[0].id}"
    preview = await post_form(
        api, assign, {"action": "preview", "picked": [str(picked.id)], "pasted": ids}
    )
    assert preview.status_code == 200
    assert "Confirm and assign 4 users" in preview.text
    assert await selectors.enrollment_in_course(course_id=course["id"], user_id=picked.id) is None
    confirm = await api.post(
        f"{assign}confirm/",
        data={
            "picked": [str(picked.id)],
            "pasted": ids,
            "csrfmiddlewaretoken": csrf_from(preview.text),
        },
    )
    assert confirm.status_code == 302
    report = await api.get(confirm.headers["Location"])
    statuses = re.findall(r'data-status="([a-z_]+)"', report.text)
    assert sorted(statuses) == sorted(["enrolled"] * 4 + ["inactive", "not_found"])
    enrollment = await selectors.enrollment_in_course(course_id=course["id"], user_id=picked.id)
    assert enrollment.source == "admin"
    assert enrollment.assigned_by == admin.id
    csv_response = await api.get(confirm.headers["Location"] + "csv/")
    assert csv_response.headers["Content-Type"].startswith("text/csv")
    lines = csv_response.text.splitlines()
    assert lines[0] == "user,user_id,username,status"
    assert f"{picked.id},{picked.id},picked_one,enrolled" in lines
    assert "999999,,,not_found" in lines


async def test_bad_pasted_tokens_and_an_empty_list_are_refused_and_nothing_is_written(
    api, console_as, create_course, make_user
):
    course = await create_course()
    await console_as(is_staff=True)
    other = await make_user()
    assign = f"/console/manage/courses/{course['id']}/assign/"
    response = await post_form(
        api, assign, {"action": "preview", "pasted": f"{other.id}\n{'x' * 300}@example.com"}
    )
    assert response.status_code == 400
    assert "These name no user" in response.text
    empty = await post_form(api, assign, {"action": "preview", "pasted": ""})
    assert empty.status_code == 400
    assert "Pick at least one user" in empty.text
    past = await post_form(
        api, assign, {"action": "preview", "pasted": str(other.id), "due_at": "2001-01-01T10:00"}
    )
    assert past.status_code == 400
    assert "Due date: Must be in the future." in past.text
    assert await selectors.enrollment_in_course(course_id=course["id"], user_id=other.id) is None


async def test_a_report_of_another_course_or_an_unknown_one_is_a_404(
    api, console_as, create_course, make_user
):
    course = await create_course()
    other_course = await create_course()
    admin = await console_as(is_staff=True)
    user = await make_user()
    stored = await assignment.assignment_bulk_create(
        course_id=other_course["id"],
        items=[assignment.Requested(assignment.USER_ID, user.id)],
        admin_id=admin.id,
    )
    for report_id in ("a" * 24, stored.id):
        url = f"/console/manage/courses/{course['id']}/assign/reports/{report_id}/"
        assert (await api.get(url)).status_code == 404
        assert (await api.get(url + "csv/")).status_code == 404


async def test_admin_course_page_lists_enrolled_users(api, console_as, create_course, make_user):
    course = await create_course()
    await console_as(is_staff=True)
    manage = f"/console/manage/courses/{course['id']}/"
    assert "Nobody is enrolled yet" in (await api.get(manage)).text
    member = await make_user(username="member_mo")
    await assignment.assignment_create(course_id=course["id"], user_id=member.id, admin_id=1)
    assert "member_mo" in (await api.get(manage)).text
