#!/usr/bin/env python
import os
import sys
from pathlib import Path

_FALSE = {"0", "false", "no", "off", ""}


def _read_devstack_env() -> None:
    """In development, take the running `make run` stack's settings from `.devstack.env`.

    `make run` writes the file (its pid, MONGODB_URI of its stand-in, DATABASE_URL, DEBUG...)
    and removes it when it stops. A variable already set in the environment wins; the file is
    ignored when DEBUG is set off, and when the launcher that wrote it is no longer running.
    Inline on purpose: the production image ships manage.py without the dev tooling.
    """
    if os.environ.get("DEBUG", "1").strip().lower() in _FALSE:
        return
    default = Path(__file__).resolve().parent / ".devstack.env"
    path = Path(os.environ.get("DEVSTACK_ENV_FILE", default))
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    if not _launcher_alive(values.pop("DEVSTACK_PID", "")):
        print(f"manage.py: ignoring {path}: the `make run` that wrote it is gone.", file=sys.stderr)
        return
    for key, value in values.items():
        os.environ.setdefault(key, value)


def _launcher_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        if Path("/proc/self").exists():  # Linux: also make sure the pid was not reused
            return b"devstack" in Path(f"/proc/{pid}/cmdline").read_bytes()
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def main() -> None:
    _read_devstack_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_app.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
