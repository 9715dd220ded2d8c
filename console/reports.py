"""An assignment report (a stored assignment's results) as a CSV download."""

import csv
import io

# A cell starting with these is a formula to a spreadsheet (CSV injection): quote it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    value = "" if value is None else str(value)
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def as_csv(rows: list[tuple]) -> str:
    """`rows`: (as requested, user id, username, status), as the report page shows them."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user", "user_id", "username", "status"])
    for requested, uid, username, status in rows:
        writer.writerow([_cell(requested), uid or "", _cell(username), status])
    return out.getvalue()
