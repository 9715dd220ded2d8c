"""What a management command says when a domain error stops it."""

import re

from django.conf import settings
from django.core.management.base import CommandError

from common.errors import DomainError, ServiceUnavailable


def command_error(exc: DomainError) -> CommandError:
    """A CommandError for `exc`; for an unreachable MongoDB, one that says what to do (an
    operator at a terminal cannot "try again shortly" a server that is not running)."""
    if not isinstance(exc, ServiceUnavailable):
        return CommandError(exc.detail)
    uri = re.sub(r"//[^/@]*@", "//***@", settings.MONGODB_URI)  # no credentials in output
    what = str(exc.detail).replace(", try again shortly", "")  # advice meant for API clients
    return CommandError(
        f"{what} MongoDB at {uri}, database {settings.MONGODB_DB!r}. "
        "Is it running? In development, start the dev stack with `make run` in another "
        "terminal; while it runs, manage.py takes its settings from .devstack.env. "
        "Otherwise set MONGODB_URI to a running server."
    )
