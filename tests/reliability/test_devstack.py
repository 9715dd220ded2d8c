"""`make run` as a real process group: refuses a busy port or a locked data file, stops as
one on any member's signal, shares its settings with manage.py, prints the admin password
last; `make superuser` without a terminal."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.stack import ROOT, free_port, port_problem, run_manage
from tests.reliability.conftest import processes

pytestmark = processes
STAMP = ".venv/.installed"  # `make -o STAMP`: never reinstall from inside a test


def _env(tmp_path: Path, db: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MONGODB_URI", "MONGODB_DB", "DATABASE_URL", "SECRET_KEY", "PORT", "DEBUG"}
    }
    env.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{db}",
        STANDIN_DATA_FILE=str(tmp_path / "standin.bson"),
        DEVSTACK_ENV_FILE=str(tmp_path / ".devstack.env"),
        PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
        PYTHONUNBUFFERED="1",
        JOB_QUEUE_NAME=f"devstack-test-{port}",  # not the developer's own queue
    )
    env.update(extra)
    return env


def _make(*args: str) -> list[str]:
    return ["make", "-s", "-C", str(ROOT), "-o", STAMP, f"PY={sys.executable}", *args]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_manage(*args, env=env, check=False, capture_output=True, timeout=60)


def _group(pgid: int) -> dict[int, str]:
    """pid -> command line of every live process in process group `pgid`."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                members[int(entry.name)] = cmdline.decode(errors="replace")
        except (OSError, ValueError):
            continue
    return members


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Stack:
    """`make run` in a session of its own (so its group is exactly the stack)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log_path = env, log
        self.port = int(env["PORT"])
        self.env_file = Path(env["DEVSTACK_ENV_FILE"])
        with log.open("wb") as out:
            self.make = subprocess.Popen(  # noqa: S603
                _make("run"),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self) -> None:
        def up():
            if self.make.poll() is not None:
                raise AssertionError(f"make run exited {self.make.returncode}:\n{self.output()}")
            return "-" * 72 + "\n" in self.output().split("Demo admin", 1)[-1]

        _wait(up, 120, "the stack to come up")

    def members(self) -> dict[int, str]:
        return _group(self.make.pid)

    def pid_of(self, needle: str) -> int:
        return next(pid for pid, cmd in self.members().items() if needle in cmd)

    def stop(self) -> None:
        if self.make.poll() is None:
            os.killpg(self.make.pid, signal.SIGKILL)
            self.make.wait()


@pytest.fixture
def stack_env(sqlite_copy, tmp_path):
    db, _ = sqlite_copy
    return _env(tmp_path, db, free_port())


@pytest.fixture
def running_stack(stack_env, tmp_path):
    stack = Stack(stack_env, tmp_path / "make-run.log")
    try:
        stack.wait_up()
        yield stack
    finally:
        stack.stop()


VICTIMS = {
    "make": "make",
    "launcher": "-m devstack",
    "uvicorn": "-m asgi_app.serve",
    "stand-in": "-m standin",
    "worker": "manage.py assignment_worker",
}


@pytest.mark.parametrize(
    ("victim", "sig"),
    [
        ("make", signal.SIGTERM),
        ("make", signal.SIGINT),
        ("launcher", signal.SIGTERM),
        ("uvicorn", signal.SIGTERM),
        ("stand-in", signal.SIGTERM),
        ("worker", signal.SIGTERM),
    ],
)
def test_a_signal_to_any_member_stops_the_whole_stack(running_stack, victim, sig):
    # given a running `make run`: make, the launcher, the stand-in, uvicorn and the worker
    members = running_stack.members()
    for needle in VICTIMS.values():
        assert any(needle in cmd for cmd in members.values()), (needle, members)
    assert running_stack.env_file.exists()

    # when one member gets the signal
    os.kill(running_stack.pid_of(VICTIMS[victim]), sig)

    # then no process of the group remains, the port is free, the settings file is gone
    _wait(lambda: not running_stack.members(), 60, f"the group to exit: {running_stack.members()}")
    running_stack.make.wait(timeout=10)
    assert port_problem("127.0.0.1", running_stack.port) is None
    assert not running_stack.env_file.exists()
    assert "stopping the stack" in running_stack.output()


def test_the_admin_password_is_printed_last_and_manage_py_reaches_the_stack(
    running_stack, stack_env, tmp_path
):
    out = running_stack.output()
    # the password comes after the server's startup lines, as the banner's last words
    password_at = out.index("Demo admin created: username 'admin', password '")
    assert out.index("Application startup complete") < password_at
    assert out.rstrip().endswith("-" * 72)
    assert "changepassword admin" in out[password_at:]

    # plain manage.py, with no database settings of its own, reaches the same databases
    env = {
        k: v
        for k, v in stack_env.items()
        if k not in {"DATABASE_URL", "MONGODB_URI", "PASSWORD_HASHERS"}
    }
    reconcile = _manage("reconcile_enrollments", "--dry-run", env=env)
    assert reconcile.returncode == 0, reconcile.stderr
    assert "Checked 5 course(s)" in reconcile.stdout  # the seeded catalogue, in the stand-in
    shell = subprocess.run(  # noqa: S603
        _make(
            "manage",
            "ARGS=shell -c 'from accounts.models import User; print(User.objects.count())'",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    assert int(shell.stdout.strip().splitlines()[-1]) >= 6  # the seeded admin and users


def test_a_second_make_run_on_the_same_data_file_refuses(running_stack, stack_env, tmp_path):
    # given a running stack; when a second starts on another port, same data file
    env = {**stack_env, "PORT": str(free_port()), "DEVSTACK_ENV_FILE": str(tmp_path / "other")}
    second = subprocess.run(  # noqa: S603
        _make("run"), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    # then it refuses, says why, and leaves nothing behind
    assert second.returncode != 0
    assert "is in use by another stand-in" in second.stdout + second.stderr
    assert not (tmp_path / "other").exists()
    assert port_problem("127.0.0.1", int(env["PORT"])) is None
    # and the first still serves
    assert running_stack.make.poll() is None


def test_make_run_checks_its_port_before_starting_anything(stack_env, tmp_path):
    # given something listening on the port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(stack_env["PORT"])))
        busy.listen()
        # when make run starts
        done = subprocess.run(  # noqa: S603
            _make("run"), env=stack_env, capture_output=True, text=True, timeout=60, check=False
        )
    # then it exits non-zero with a clear message, having started nothing
    assert done.returncode != 0
    assert f"cannot serve on 127.0.0.1:{stack_env['PORT']}" in done.stderr
    assert "make run PORT=" in done.stderr
    assert not Path(stack_env["STANDIN_DATA_FILE"] + ".lock").exists()
    assert not Path(stack_env["DEVSTACK_ENV_FILE"]).exists()


def test_manage_py_ignores_a_settings_file_whose_stack_is_gone(stack_env, tmp_path):
    # given a .devstack.env left by a stack that no longer runs
    env_file = Path(stack_env["DEVSTACK_ENV_FILE"])
    env_file.write_text("DEVSTACK_PID=999999999\nDATABASE_URL=sqlite:////nonexistent/x.db\n")
    # when a management command runs
    done = _manage("check", env={**stack_env, "DEBUG": "1"})
    # then the file is ignored (said once), and the command's own settings apply
    assert done.returncode == 0, done.stderr
    assert "the `make run` that wrote it is gone" in done.stderr


def test_a_management_command_says_what_to_do_when_mongodb_is_unreachable(stack_env):
    env = {
        **stack_env,
        "DEBUG": "1",
        "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
        "MONGODB_CONNECT_TIMEOUT_MS": "300",
    }
    done = _manage("reconcile_enrollments", "--dry-run", env=env)
    assert done.returncode == 1
    assert "try again shortly" not in done.stderr
    assert "make run" in done.stderr
    assert env["MONGODB_URI"] in done.stderr


def test_make_superuser_works_without_a_terminal(stack_env, sqlite_copy):
    db, _ = sqlite_copy
    env = {
        **stack_env,
        "DJANGO_SUPERUSER_USERNAME": "ops",
        "DJANGO_SUPERUSER_EMAIL": "ops@example.com",
        "DJANGO_SUPERUSER_PASSWORD": "Correct-Horse-Battery-9",
    }
    done = subprocess.run(  # noqa: S603
        _make("superuser"),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--noinput" in done.stdout
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT is_superuser, is_staff FROM accounts_user WHERE username = 'ops'"
        ).fetchone()
    assert row == (1, 1)
