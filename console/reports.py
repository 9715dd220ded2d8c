"""Per-user assignment results as the console shows them (with usernames), and as a CSV
download: a stored assignment's report, and an assignment job's results."""

import csv
import io
from collections.abc import Iterable

from accounts import selectors as accounts

HEADER = ("user", "user_id", "username", "status")
# A cell starting with these is a formula to a spreadsheet (CSV injection): quote it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


async def named_users(ids: list[int]) -> list[tuple[int, str, bool]]:
    """(id, username, is_active) of these ids that exist, in the given order."""
    if not ids:
        return []
    found = {row[0]: row for row in await accounts.users_by_ids(ids=list(dict.fromkeys(ids)))}
    return [found[i] for i in dict.fromkeys(ids) if i in found]


async def result_rows(results: list[dict]) -> list[tuple]:
    """(as requested, user id, username, status) of a report's results."""
    names = {
        uid: name
        for uid, name, _ in await named_users([r["user_id"] for r in results if r["user_id"]])
    }
    return [
        (r.get("user", r["user_id"]), r["user_id"], names.get(r["user_id"], ""), r["status"])
        for r in results
    ]


def _cell(value) -> str:
    value = "" if value is None else str(value)
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def csv_lines(rows: Iterable[tuple], *, header: bool = True) -> str:
    """`rows` as CSV text: (as requested, user id, username, status), as the report pages
    show them; a streamed download sends the header with its first part only."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(HEADER)
    for requested, uid, username, status in rows:
        writer.writerow([_cell(requested), uid or "", _cell(username), status])
    return out.getvalue()
