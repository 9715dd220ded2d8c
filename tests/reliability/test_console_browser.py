"""The web console in a real browser, as a person clicks through it: Debian's chromium
driven by Playwright against a real server (uvicorn, the stand-in, SQLite), offline.

Every page visited is checked with axe-core (vendored under tests/console/vendor) for
serious or critical accessibility violations, and photographed: the screenshots go to
$CONSOLE_SCREENSHOTS when set (docs/screenshots/ holds the committed ones), else to a
temporary directory.
"""

import csv
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from devstack.stack import WorkerProcess
from tests.reliability.chromium import launch, localhost_only, needs_chromium
from tests.reliability.conftest import processes
from tests.reliability.servers import (
    PASSWORD,
    UvicornServer,
    bearer,
    mint_access,
    prepare_sqlite,
    server_env,
)

AXE = Path(__file__).resolve().parents[1] / "console" / "vendor" / "axe.min.js"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [processes, needs_chromium]
CATALOGUE = [
    ("Security Awareness 101", "Phishing, passwords and how to report an incident.", "0.00"),
    ("Workplace Safety", "Mandatory safety training for every employee.", "0.00"),
    ("Data Protection and GDPR", "Handling personal data lawfully, with case studies.", "49.99"),
    ("Effective Code Review", "Giving and receiving useful review on pull requests.", "129.00"),
    ("Leading Remote Teams", "Rituals and tools for managers of distributed teams.", "199.50"),
    ("Incident Response Basics", "What to do in the first hour of a security incident.", "0.00"),
]


@pytest.fixture(scope="module")
def site(sqlite_template, standin_uri, tmp_path_factory):
    path, ids = sqlite_template
    db = tmp_path_factory.mktemp("console") / "db.sqlite3"
    shutil.copyfile(path, db)
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"console_{uuid.uuid4().hex[:8]}",
        DEBUG="1",  # as `make run` serves it: static files from the apps, plain-http cookies
    )
    with UvicornServer(env) as server:
        server.ids = ids
        admin = bearer(mint_access(ids["staff"], "staff", is_staff=True))
        for title, description, amount in CATALOGUE:
            body = {
                "course_title": title,
                "course_description": description,
                "display_price": {"amount": amount, "currency": "USD"},
            }
            created = httpx.post(f"{server.url}/api/courses/", json=body, headers=admin)
            assert created.status_code == 201, created.text
        yield server


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = launch(driver)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    directory = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def browser_tab(browser, server):
    """A fresh browser profile on `server` that can reach 127.0.0.1 only."""
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    tab = context.new_page()
    localhost_only(tab)
    tab.failed = []
    tab.on("response", lambda r: r.status >= 500 and tab.failed.append(r.url))
    yield tab
    assert tab.blocked == []
    assert tab.failed == []
    context.close()


@pytest.fixture
def page(browser, site):
    with browser_tab(browser, site) as tab:
        yield tab


def check_page(page, shots: Path, name: str) -> None:
    """No serious or critical axe-core violation on the page as it is; then a screenshot."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)"""
    )
    assert violations == [], name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def sign_in(page, username: str, shots: Path | None = None) -> None:
    page.goto("/console/")
    assert urlsplit(page.url).path == "/console/login/"
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    if shots is not None:
        check_page(page, shots, "01-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/courses/")


def test_learner_finds_a_course_enrolls_and_sees_it_in_my_training(page, shots):
    sign_in(page, "regular", shots)
    check_page(page, shots, "02-catalogue")
    page.get_by_label("Search courses").fill("incident")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=incident**")
    cards = page.get_by_role("list", name="Courses").get_by_role("listitem")
    assert cards.count() == 1
    cards.get_by_role("link", name="Incident Response Basics").click()
    page.get_by_role("button", name="Enroll now").click()
    page.get_by_text("You are enrolled").wait_for()
    check_page(page, shots, "03-course-enrolled")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My training").click()
    row = page.get_by_role("row", name="Incident Response Basics")
    assert row.get_by_text("Self-enrolled").is_visible()
    check_page(page, shots, "04-my-training")
    row.get_by_role("button", name="Withdraw from Incident Response Basics").click()
    page.get_by_text("You have withdrawn from this course.").wait_for()
    assert row.get_by_text("Withdrawn", exact=True).is_visible()
    assert row.get_by_role("button").count() == 0  # nothing left to withdraw from
    page.goto("/console/manage/courses/")
    assert page.get_by_role("heading", name="Admins only").is_visible()
    check_page(page, shots, "05-forbidden")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login/")


def test_admin_creates_a_capped_course(page, shots):
    sign_in(page, "staff")
    page.get_by_role("link", name="Manage courses").click()
    check_page(page, shots, "06-manage-courses")
    page.get_by_role("link", name="New course").first.click()
    page.get_by_label("Title").fill("Fire Warden Certification")
    page.get_by_label("Description").fill("Evacuation drills, extinguishers and roll calls.")
    page.get_by_label("Price").fill("abc")
    page.get_by_label("Capacity").fill("25")
    page.get_by_role("button", name="Create course").click()
    page.get_by_text("Enter a decimal amount").wait_for()  # refused: nothing created
    check_page(page, shots, "07-course-form-errors")
    page.get_by_label("Price").fill("75.00")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_role("button", name="Create course").click()
    page.get_by_text("Course “Fire Warden Certification” created.").wait_for()
    figures = page.get_by_role("region", name="Enrollment figures")
    assert figures.get_by_text("25", exact=True).count() == 2  # capacity, seats left
    check_page(page, shots, "08-admin-course")


def test_admin_assigns_thirty_users_by_search_and_paste_and_downloads_the_report(
    page, site, shots, tmp_path
):
    bulk = site.ids["bulk"]
    sign_in(page, "staff")
    page.goto("/console/manage/courses/?q=workplace")
    page.get_by_role("link", name="Assign users to Workplace Safety").click()
    page.get_by_label("Name or email").fill("bulk1@example.com")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("checkbox", name="bulk1 ").check()
    page.get_by_label("Name or email").fill("bulk2@")
    page.keyboard.press("Enter")  # the search button is the form's first: Enter searches
    page.get_by_role("checkbox", name="bulk2 ").check()
    pasted = "\n".join(str(uid) for uid in bulk[10:38]) + "\n999999999"
    page.get_by_label("User ids, usernames or emails").fill(pasted)
    check_page(page, shots, "09-assign-panel")
    page.get_by_role("button", name="Preview assignment").click()
    page.get_by_role("button", name="Confirm and assign 30 users").wait_for()
    check_page(page, shots, "10-assign-preview")
    page.get_by_role("button", name="Confirm and assign 30 users").click()
    page.get_by_role("heading", name="Assignment report").wait_for()
    assert page.locator("[data-status=enrolled]").count() == 30
    assert page.locator("[data-status=not_found]").count() == 1
    check_page(page, shots, "11-assign-report")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "report.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open()))
    assert len(rows) == 31
    assert {r["status"] for r in rows} == {"enrolled", "not_found"}
    assert {"bulk1", "bulk2"} <= {r["username"] for r in rows}


COHORT = 20_000
COHORT_CAPACITY = 19_500
UNKNOWN_IDS = 10  # lines naming no user


@pytest.fixture(scope="module")
def job_site(standin_uri, tmp_path_factory):
    """A server and a real assignment worker (`manage.py assignment_worker`) on a queue of
    their own, over a database of COHORT users (bulk-created with one password hash)."""
    directory = tmp_path_factory.mktemp("console-jobs")
    db = directory / "db.sqlite3"
    ids = prepare_sqlite(db, bulk=COHORT)
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"console_jobs_{uuid.uuid4().hex[:8]}",
        JOB_QUEUE_NAME=f"console-jobs-{uuid.uuid4().hex[:8]}",
        JOB_CHUNK_SIZE="1000",  # 20 chunks: the progress moves in steps a person sees
        DEBUG="1",
    )
    with UvicornServer(env) as server, WorkerProcess(env, log_path=directory / "worker.log"):
        server.ids = ids
        server.worker_log = directory / "worker.log"
        yield server


def _cohort_emails() -> tuple[list[str], list[int]]:
    """The upload's lines: the bulk users' emails in order, every seventh in mixed case
    (matched case-insensitively), with UNKNOWN_IDS unknown emails early among them; and
    the bulk indexes of the known lines, in the file's order."""
    known = range(COHORT - UNKNOWN_IDS)
    lines: list[str] = [
        f"Bulk{n}@Example.COM" if n % 7 == 3 else f"bulk{n}@example.com" for n in known
    ]
    for n, position in enumerate(range(3, 3 + 17 * UNKNOWN_IDS, 17)):  # early, among the rest
        lines.insert(position, f"nobody{n}@example.com")
    return lines, list(known)


def _summary(page) -> dict[str, int]:
    return {
        key: int(page.locator(f"[data-summary={key}]").inner_text().replace(",", ""))
        for key in ("enrolled", "waitlisted", "not_found", "already_enrolled", "inactive")
    }


def test_admin_uploads_a_20000_line_csv_previews_confirms_watches_and_downloads_the_report(
    browser, job_site, shots, tmp_path
):
    lines, known = _cohort_emails()
    upload = tmp_path / "cohort.csv"
    upload.write_text("email\n" + "".join(f"{email}\n" for email in lines))
    admin = bearer(mint_access(job_site.ids["staff"], "staff", is_staff=True))
    body = {
        "course_title": "Annual Compliance 2026",
        "course_description": "Code of conduct, anti-bribery and data handling for everyone.",
        "display_price": {"amount": "0.00", "currency": "USD"},
        "capacity": COHORT_CAPACITY,
    }
    created = httpx.post(f"{job_site.url}/api/courses/", json=body, headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    course_id = created.json()["id"]
    expected = {
        "enrolled": COHORT_CAPACITY,
        "waitlisted": COHORT - UNKNOWN_IDS - COHORT_CAPACITY,
        "not_found": UNKNOWN_IDS,
        "already_enrolled": 0,
        "inactive": 0,
    }
    with browser_tab(browser, job_site) as page:
        sign_in(page, "staff")
        page.goto(f"/console/manage/courses/{course_id}/assign/")
        page.get_by_role("link", name="Upload a CSV").click()
        page.get_by_role("heading", name="Upload a CSV").wait_for()
        # the file, and a due date for its rows (they have none of their own)
        page.get_by_label("CSV file").set_input_files(upload)
        page.get_by_label("Due date (UTC)").fill("2031-09-30T17:00")
        assert not page.get_by_label("Override capacity").is_checked()
        check_page(page, shots, "12-job-upload")
        # A file without an identifier column is refused with the service's message; no job
        # starts, and the due date is kept.
        wrong = tmp_path / "names.csv"
        wrong.write_text("name\nAda\n")
        page.get_by_label("CSV file").set_input_files(wrong)
        page.get_by_role("button", name="Preview", exact=True).click()
        page.get_by_text(
            "names.csv: CSV line 1: The header row must name an identifier column: "
            "user_id, username or email."
        ).wait_for()
        assert page.get_by_label("Due date (UTC)").input_value() == "2031-09-30T17:00"
        page.get_by_label("CSV file").set_input_files(upload)
        # Preview: a dry run of the whole file, nothing written
        started = time.monotonic()
        page.get_by_role("button", name="Preview", exact=True).click()
        page.get_by_text(f"Preview started: {COHORT:,} users from cohort.csv.").wait_for()
        page.get_by_role("heading", name="Preview — nothing written").wait_for()
        page.get_by_text("Succeeded", exact=True).wait_for(timeout=300_000)
        dry_run = time.monotonic() - started
        assigned = COHORT - UNKNOWN_IDS
        confirm = page.get_by_role("button", name=f"Confirm and assign {assigned:,} users")
        confirm.wait_for()
        assert _summary(page) == expected
        assert page.get_by_text("Due 30 Sep 2031, 17:00 UTC").is_visible()
        assert page.locator("[data-status=not_found]").count() == 3  # lines 4, 21 and 38
        roster = httpx.get(
            f"{job_site.url}/api/courses/{course_id}/enrollments/", headers=admin, timeout=30
        )
        assert roster.status_code == 200
        assert roster.json()["results"] == []  # the preview wrote nothing
        check_page(page, shots, "13-job-preview")
        # Confirm: the real job from the stored file, with the same due date
        started = time.monotonic()
        confirm.click()
        page.get_by_text(f"Confirmed: assigning {COHORT:,} users.").wait_for()
        page.get_by_role("heading", name="Upload job").wait_for()
        # while it runs, the page updates itself: a count between none and all
        page.wait_for_function(
            """total => {
                const region = document.getElementById('job-progress');
                const bar = document.getElementById('job-bar');
                return region && bar && region.dataset.jobStatus === 'running'
                    && bar.value > 0 && bar.value < total;
            }""",
            arg=COHORT,
            timeout=120_000,
            polling=50,
        )
        assert page.get_by_role("button", name="Cancel job").is_visible()
        # Hold the page's polls while axe runs and the screenshot is taken, then let them go.
        held = []

        def hold(request_route) -> None:
            held.append(request_route)

        page.route("**/progress/", hold)
        check_page(page, shots, "14-job-running")
        page.unroute("**/progress/", hold)
        for request_route in held:
            request_route.continue_()
        page.get_by_text("Succeeded", exact=True).wait_for(timeout=300_000)
        finished = time.monotonic() - started
        print(
            f"\n20,000-line upload: dry run {dry_run:.1f} s from Preview to the finished "
            f"preview; {finished:.1f} s from Confirm to the finished job"
        )
        processed = page.get_by_test_id("job-processed")
        assert processed.inner_text() == f"{COHORT:,}"
        assert _summary(page) == expected
        assert page.get_by_role("button", name="Cancel job").count() == 0
        first_page = page.get_by_role("table").locator("[data-status]")
        assert first_page.count() == 50
        assert page.locator("[data-status=not_found]").count() == 3
        check_page(page, shots, "15-job-finished")
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("link", name="Download results CSV").click()
        saved = tmp_path / "results.csv"
        download.value.save_as(saved)
        rows = list(csv.DictReader(saved.open()))
        assert len(rows) == COHORT
        # "user" as sent, "user_id" resolved (empty for the unknown ones), as assign-multiple
        assert [r["user"] for r in rows] == lines
        bulk = job_site.ids["bulk"]
        assert [int(r["user_id"]) for r in rows if r["user_id"]] == [bulk[n] for n in known]
        assert sum(1 for r in rows if r["user_id"] == "") == UNKNOWN_IDS
        counts = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        assert counts == {key: value for key, value in expected.items() if value}
        assert rows[0]["username"] == "bulk0"
        assert rows[4]["user"] == "Bulk3@Example.COM"  # after the first unknown line
        assert rows[4]["username"] == "bulk3"
        # the form's due date is every enrollment's (a mixed-case line's too)
        for n in (0, 3, COHORT_CAPACITY - 1):
            one = httpx.get(
                f"{job_site.url}/api/courses/{course_id}/enrollments/{bulk[n]}/",
                headers=admin,
                timeout=30,
            )
            assert one.status_code == 200, one.text
            assert one.json()["due_at"].startswith("2031-09-30T17:00:00")
        page.get_by_role("link", name="All upload jobs of this course").click()
        assert page.get_by_role("row", name="Succeeded").count() == 2  # the preview and the job
        assert page.get_by_role("row", name="Preview").count() == 1
        check_page(page, shots, "16-job-list")
        page.get_by_role("link", name="Assignment history").click()
        assert page.get_by_role("row", name="Succeeded").count() == 2
        check_page(page, shots, "17-assignment-history")


def test_admin_assigns_thirty_emails_with_a_due_date_to_a_capped_course(page, site, shots):
    """20 seats, 30 people pasted by email (as an HR export spells them, case and all):
    the dry run shows 20 enrolled and 10 waitlisted and writes nothing; the confirmed
    assignment seats the first 20, queues the other 10 in the pasted order, and the
    course page shows the queue and the due date."""
    admin = bearer(mint_access(site.ids["staff"], "staff", is_staff=True))
    body = {
        "course_title": "Forklift Operator Refresher",
        "course_description": "Pre-use checks, load charts and pedestrian zones.",
        "display_price": {"amount": "0.00", "currency": "USD"},
        "capacity": 20,
    }
    created = httpx.post(f"{site.url}/api/courses/", json=body, headers=admin)
    assert created.status_code == 201, created.text
    course = created.json()["id"]
    people = [f"bulk{n}" for n in range(200, 230)]
    spelled = [  # every third address as a spreadsheet might have capitalised it
        f"{name.capitalize()}@Example.COM" if i % 3 == 0 else f"{name}@example.com"
        for i, name in enumerate(people)
    ]
    sign_in(page, "staff")
    page.goto("/console/manage/courses/?q=forklift")
    page.get_by_role("link", name="Assign users to Forklift Operator Refresher").click()
    page.get_by_label("User ids, usernames or emails").fill("\n".join(spelled))
    page.get_by_label("Due date (UTC)").fill("2031-03-14T17:00")
    page.get_by_role("button", name="Preview assignment").click()

    confirm = page.get_by_role("button", name="Confirm and assign 30 users")
    confirm.wait_for()
    forecast = page.get_by_role("region", name="What will happen")
    assert forecast.get_by_text("Will be enrolled").locator("..").inner_text().endswith("20")
    assert forecast.get_by_text("Will be waitlisted").locator("..").inner_text().endswith("10")
    assert page.get_by_text("Due 14 Mar 2031, 17:00 UTC").is_visible()
    assert page.locator("[data-status=enrolled]").count() == 20
    waitlisted = page.locator("[data-status=waitlisted]")
    assert waitlisted.count() == 10
    assert waitlisted.first.inner_text() == "Waitlisted #1"
    check_page(page, shots, "18-capped-assign-preview")
    roster = httpx.get(f"{site.url}/api/courses/{course}/enrollments/", headers=admin)
    assert roster.status_code == 200
    assert roster.json()["results"] == []  # a dry run writes nothing
    assert httpx.get(f"{site.url}/api/courses/{course}/", headers=admin).json()["enrollers"] == 0

    confirm.click()
    page.get_by_role("heading", name="Assignment report").wait_for()
    assert page.locator("[data-status]").count() == 30
    assert page.locator("[data-status=enrolled]").count() == 20
    assert page.locator("[data-status=waitlisted]").count() == 10
    queued = page.get_by_role("row", name="bulk220")
    assert queued.get_by_text("Waitlisted #1").is_visible()
    assert page.get_by_text("due 14 Mar 2031, 17:00 UTC").is_visible()
    check_page(page, shots, "19-capped-assign-report")

    page.get_by_role("link", name="← Back to the course").click()
    figures = page.get_by_role("region", name="Enrollment figures")
    assert figures.get_by_text("Seats left").locator("..").inner_text().endswith("0")
    chart = page.get_by_test_id("report-chart")
    assert chart.locator("[data-status=active]").text_content() == "20"
    assert chart.locator("[data-status=waitlisted]").text_content() == "10"
    page.get_by_label("Status", exact=True).select_option("waitlisted")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=waitlisted**")
    rows = page.get_by_role("table").get_by_role("row")
    assert rows.count() == 11  # the header and the ten queued, in the pasted order
    for position, name in enumerate(people[20:], start=1):
        row = page.get_by_role("row", name=f"{name} ")
        assert row.get_by_text(f"#{position}", exact=True).is_visible(), name
        assert row.get_by_text("14 Mar 2031").is_visible(), name
    check_page(page, shots, "20-capped-course-waitlist")
