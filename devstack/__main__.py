"""`make run`: check the port, start the MongoDB stand-in (unless MONGODB_URI is set), migrate,
seed, serve, and start one assignment-job worker (Redis at JOB_QUEUE_URL, default the local
one); print the demo credentials last.

Deliberately does not import Django settings: it prepares the environment for its children
(manage.py and uvicorn) and writes it to `.devstack.env`, which `manage.py` reads while this
stack is alive, so `make manage ARGS=...` reaches the same databases.

The stack lives and dies as one: SIGINT/SIGTERM/SIGHUP to the launcher, to `make` above it
(see `_ParentWatch`) or the exit of any child stops every member and removes `.devstack.env`.
The children get SIGTERM from the kernel should the launcher itself be killed outright.

Environment: PORT (8000), HOST (127.0.0.1), MONGODB_URI (else the stand-in on
STANDIN_DATA_FILE, default `.standin-data.bson`), DATABASE_URL (else `db.sqlite3`),
DEVSTACK_ENV_FILE (default `.devstack.env`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from devstack.stack import (
    ROOT,
    UvicornProcess,
    WorkerProcess,
    die_with_parent,
    port_problem,
    run_manage,
)

# Settings a management command needs to reach this stack (written to DEVSTACK_ENV_FILE).
SHARED_SETTINGS = (
    "DEBUG",
    "DATABASE_URL",
    "MONGODB_URI",
    "MONGODB_DB",
    "MONGO_DRIVER",
    "REDIS_URL",
    "JOB_QUEUE_URL",
    "JOB_QUEUE_NAME",
    "PASSWORD_HASHERS",
)
_POLL_SECONDS = 0.2


class StackStopped(Exception):
    """A signal or a member's exit: time to stop the whole stack."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise StackStopped(f"{signal.Signals(signum).name} received", 0)


class _ParentWatch:
    """Notices when `make` above us is gone or is handling a fatal signal.

    GNU make forwards SIGTERM to its job (the Makefile `exec`s this process, so the job is
    us), but on SIGINT/SIGHUP sent to make alone it just waits for the job to end. Its handler
    resets the signal to the default disposition first, which shows in /proc/<pid>/status
    (SigCgt): a caught fatal signal that is no longer caught means make is going down.
    """

    FATAL = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.ppid = os.getppid()
        self.caught = self._caught() & {int(s) for s in self.FATAL}

    def _caught(self) -> set[int]:
        try:
            status = Path(f"/proc/{self.ppid}/status").read_text()
        except OSError:
            return set()
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                mask = int(line.split()[1], 16)
                return {n for n in range(1, 65) if mask & (1 << (n - 1))}
        return set()

    def check(self) -> None:
        if os.getppid() != self.ppid:
            raise StackStopped("the parent process is gone", 1)
        if self.caught and not self.caught <= self._caught():
            raise StackStopped("the parent process is stopping", 0)


class DevStack:
    def __init__(self, environ: dict[str, str]) -> None:
        self.env = dict(environ)
        self.env.setdefault("DEBUG", "1")
        self.env.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'db.sqlite3'}")
        self.host = self.env.get("HOST", "127.0.0.1")
        self.port = int(self.env.get("PORT", "8000"))
        self.data_file = Path(self.env.get("STANDIN_DATA_FILE", ROOT / ".standin-data.bson"))
        self.env_file = Path(self.env.get("DEVSTACK_ENV_FILE", ROOT / ".devstack.env"))
        self.members: list[tuple[str, Callable[[], bool]]] = []  # (name, is it running?)
        self.seed_output = ""

    # ------------------------------------------------------------------------ checks

    def preflight(self) -> str | None:
        """Why the stack cannot start, checked before anything starts; None when it can."""
        owner = running_owner(self.env_file)
        if owner is not None:
            return (
                f"another `make run` (pid {owner}) is running from this checkout "
                f"({self.env_file.name}); stop it first."
            )
        problem = port_problem(self.host, self.port)
        if problem is not None:
            return (
                f"cannot serve on {self.host}:{self.port}: {problem}. Is another server "
                f"(another `make run`?) using it? Stop it, or pick another port: "
                f"make run PORT={self.port + 1}"
            )
        return None

    # ----------------------------------------------------------------------- running

    def run(self) -> int:
        problem = self.preflight()
        if problem is not None:
            print(f"make run: {problem}", file=sys.stderr)
            return 1
        watch = _ParentWatch()
        with ExitStack() as stack:
            try:
                self._start(stack, watch)
                return self._serve(watch)
            except StackStopped as stop:
                print(f"make run: {stop.reason}; stopping the stack.", file=sys.stderr)
                return stop.status
            except subprocess.CalledProcessError as exc:
                command = " ".join(exc.cmd[1:])
                print(f"make run: {command} failed ({exc.returncode}).", file=sys.stderr)
                print(exc.stdout or "", file=sys.stderr)
                return 1
            except RuntimeError as exc:  # a server that did not start
                print(f"make run: {exc}", file=sys.stderr)
                return 1
            finally:
                # Finish the teardown whatever arrives meanwhile (Ctrl-C reaches the whole
                # group, so the children are often stopping already).
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
        return 1

    def _start(self, stack: ExitStack, watch: _ParentWatch) -> None:
        from devstack.stack import start_mongo

        try:
            uri, standin = start_mongo(
                stack,
                self.env.get("MONGODB_URI"),
                data_file=self.data_file,
                preexec_fn=die_with_parent,
            )
        except RuntimeError as exc:  # StandinError: e.g. the data file is locked
            raise RuntimeError(f"the MongoDB stand-in did not start: {exc}") from None
        self.env["MONGODB_URI"] = uri
        if standin is not None:
            self.members.append(("the MongoDB stand-in", lambda: standin.running))
            print(f"MongoDB stand-in (development only) at {uri}, data in {self.data_file}")
        watch.check()
        self._write_env_file()
        stack.callback(self.env_file.unlink, missing_ok=True)
        run_manage("migrate", "--noinput", env=self.env, preexec_fn=die_with_parent)
        watch.check()
        seeded = run_manage(
            "seed_demo",
            "--if-empty",
            env=self.env,
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        self.seed_output = seeded.stdout
        server = stack.enter_context(
            UvicornProcess(
                "asgi_app.asgi:application",
                self.env,
                host=self.host,
                port=self.port,
                capture=False,
                preexec_fn=die_with_parent,
            )
        )
        self.members.append(("uvicorn", lambda: server.process.poll() is None))
        worker = stack.enter_context(WorkerProcess(self.env, preexec_fn=die_with_parent))
        self.members.append(("the assignment-job worker", lambda: worker.running))

    def _serve(self, watch: _ParentWatch) -> int:
        print(self._banner(), flush=True)
        while True:
            for name, running in self.members:
                if not running():
                    raise StackStopped(f"{name} exited", 1)
            watch.check()
            time.sleep(_POLL_SECONDS)

    def _write_env_file(self) -> None:
        lines = [
            "# Written by `make run`; removed when it stops. manage.py reads it (in development,",
            "# for variables not already set) while the process DEVSTACK_PID is alive.",
            f"DEVSTACK_PID={os.getpid()}",
            *(f"{key}={self.env[key]}" for key in SHARED_SETTINGS if self.env.get(key)),
        ]
        temporary = self.env_file.with_name(self.env_file.name + ".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.chmod(0o600)
        temporary.replace(self.env_file)

    def _banner(self) -> str:
        base = f"http://{self.host}:{self.port}"
        rule = "-" * 72
        return "\n".join(
            [
                rule,
                f"API {base}/api/   docs {base}/api/docs/   admin {base}/admin/",
                f"Console {base}/console/ (sign in as a demo user or the demo admin)",
                f'Management commands reach this stack: make manage ARGS="..." '
                f"(settings in {self.env_file.name}). Stop with Ctrl-C.",
                "Demo admin: username 'admin', password shown once, when it is created (below);",
                'forgot it? make manage ARGS="changepassword admin"',
                self.seed_output.strip(),
                rule,
            ]
        )


def running_owner(env_file: Path) -> int | None:
    """The pid recorded in `env_file` when that launcher is still alive, else None."""
    try:
        text = env_file.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("DEVSTACK_PID="):
            pid = int(line.partition("=")[2] or 0)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return None
            return pid if b"devstack" in cmdline and pid != os.getpid() else None
    return None


def main() -> int:
    die_with_parent()  # if `make` is killed outright, so are we (and then our children)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    return DevStack(dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main())
