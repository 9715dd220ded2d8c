"""The assign panel's pasted list: which users it names.

Today a user is named by id (what `assignment.assignment_bulk_create` takes). Usernames
and emails come with bulk assignment v2 (issue 14), whose service resolves them; until
then they are reported back as not accepted yet, never guessed at here. This module is
the one place the console turns pasted text into users: replace `NOT_YET_ACCEPTED` with
the v2 resolver when it lands.
"""

import re
from dataclasses import dataclass, field

from courses.serializers import MAX_USER_ID

# Separators between pasted identifiers: commas, semicolons, whitespace (lines, tabs).
_SEPARATORS = re.compile(r"[\s,;]+")
NOT_YET_ACCEPTED = "Usernames and emails are accepted once bulk assignment v2 lands"


@dataclass
class PastedList:
    user_ids: list[int] = field(default_factory=list)
    not_accepted: list[str] = field(default_factory=list)  # tokens that are not user ids


def parse_pasted(text: str) -> PastedList:
    """Split pasted text into user ids (in order, repeats kept: the report counts them as
    duplicates, as the API does) and what is not a user id."""
    pasted = PastedList()
    for token in _SEPARATORS.split(text.replace("\x00", "")):
        if not token:
            continue
        if token.isascii() and token.isdigit() and 1 <= int(token) <= MAX_USER_ID:
            pasted.user_ids.append(int(token))
        else:
            pasted.not_accepted.append(token[:100])
    return pasted
