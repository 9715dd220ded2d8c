"""The last assignment report of a signed-in admin, kept in their session.

An assignment's per-user report is answered once by the service; the console keeps the
latest one in the admin's session so that its page can be paged and downloaded as CSV
after the redirect that follows the confirmation. Stored assignments (bulk assignment v2,
issue 14) will make reports permanent: then `load` reads the stored one and this goes.
"""

import csv
import io
import uuid
from dataclasses import dataclass

from courses.assignment import AssignmentReport

SESSION_KEY = "console_assignment_report"
# A cell starting with these is a formula to a spreadsheet (CSV injection): quote it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class StoredReport:
    id: str
    course_id: str
    course_title: str
    summary: dict[str, int]
    results: list[tuple[int, str]]
    enrollers: int


async def save(session, report: AssignmentReport, course_title: str) -> str:
    report_id = uuid.uuid4().hex
    await session.aset(
        SESSION_KEY,
        {
            "id": report_id,
            "course_id": report.course_id,
            "course_title": course_title,
            "summary": report.summary,
            "results": [[r["user_id"], r["status"]] for r in report.results],
            "enrollers": report.enrollers,
        },
    )
    return report_id


async def load(session, course_id: str, report_id: str) -> StoredReport | None:
    stored = await session.aget(SESSION_KEY)
    if not stored or stored["id"] != report_id or stored["course_id"] != course_id:
        return None
    return StoredReport(
        id=stored["id"],
        course_id=stored["course_id"],
        course_title=stored["course_title"],
        summary=stored["summary"],
        results=[(uid, status) for uid, status in stored["results"]],
        enrollers=stored["enrollers"],
    )


def _cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def as_csv(report: StoredReport, usernames: dict[int, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user_id", "username", "status"])
    for uid, status in report.results:
        writer.writerow([uid, _cell(usernames.get(uid, "")), status])
    return out.getvalue()
