"""The assign panel's pasted list: which users it names, for bulk assignment v2.

A token that is all digits is a user id, one with an `@` an email, anything else a
username; `assignment.assignment_bulk_create` resolves them (and reports who it could not
find as `not_found`). This module is the one place the console turns pasted text into
requested users.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime

from courses.assignment import EMAIL, USER_ID, USERNAME, Requested
from courses.serializers import MAX_USER_ID

# Separators between pasted identifiers: commas, semicolons, whitespace (lines, tabs).
_SEPARATORS = re.compile(r"[\s,;]+")
MAX_IDENTIFIER_LENGTH = 254  # the longest email (and what the API's CSV accepts)


@dataclass
class PastedList:
    items: list[Requested] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)  # tokens no user can be named by

    @property
    def user_ids(self) -> list[int]:
        return [item.value for item in self.items if item.kind == USER_ID]


def _kind(token: str) -> str:
    if token.isascii() and token.isdigit():
        return USER_ID
    return EMAIL if "@" in token else USERNAME


def parse_pasted(text: str, due_at: datetime | None = None) -> PastedList:
    """Split pasted text into requested users, in order, repeats kept (the report counts
    them as duplicates, as the API does), each with `due_at`."""
    pasted = PastedList()
    for token in _SEPARATORS.split(text.replace("\x00", "")):
        if not token:
            continue
        kind = _kind(token)
        if kind == USER_ID and not 1 <= int(token) <= MAX_USER_ID:
            pasted.too_long.append(token[:100])
        elif len(token) > MAX_IDENTIFIER_LENGTH:
            pasted.too_long.append(token[:100])
        else:
            value = int(token) if kind == USER_ID else token
            pasted.items.append(Requested(kind, value, due_at))
    return pasted
