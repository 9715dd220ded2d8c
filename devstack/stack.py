"""The one place that starts the development stack's servers.

`make run` (`devstack/__main__.py`), `make bench`, `make loadtest`, the fuzz driver and the
reliability tests all start uvicorn and the MongoDB stand-in through this module:

    port = free_port()
    with UvicornProcess("asgi_app.asgi:application", env) as server:   # waits for /healthz
        httpx.get(server.url + "/api/courses/")

    with ExitStack() as stack:
        uri, standin = start_mongo(stack, os.environ.get("MONGODB_URI"))  # stand-in if unset

Tooling only: product code never imports it (tests/api/test_architecture.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_problem(host: str, port: int) -> str | None:
    """Why uvicorn could not listen on host:port, or None when it can (bound as uvicorn does,
    with SO_REUSEADDR, so a port in TIME_WAIT still counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux prctl
    PR_SET_PDEATHSIG; a no-op elsewhere). Used as `preexec_fn` for the children of `make run`,
    and by the launcher itself, so that no member of the stack outlives the one above it."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def wait_http(
    url: str, process: subprocess.Popen[bytes], timeout: float, describe: Callable[[], str]
) -> None:
    """Return once `url` answers below 500; raise if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}:\n{describe()}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http URL
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not answer {url} within {timeout}s:\n{describe()}")
        time.sleep(0.1)


def uvicorn_command(
    app: str,
    *,
    host: str = "127.0.0.1",
    port: int,
    options: Sequence[str] = (),
    wrapper: Sequence[str] = (),
) -> list[str]:
    """`python [wrapper] -m asgi_app.serve app --host --port [options]` with this interpreter:
    the production server definition (uvicorn with its head, body and timeout limits, read
    from the environment; `options` may be `--workers` and `--log-level`)."""
    command = [sys.executable, *wrapper, "-m", "asgi_app.serve", app]
    return [*command, "--host", host, "--port", str(port), *options]


class UvicornProcess:
    """`asgi_app.serve` (uvicorn) serving `app` in a subprocess; `start()` returns once it
    answers `ready_path`.

    Output goes to `log_path` (appended, kept), to a temporary file (deleted when the server
    is stopped) or, with `capture=False`, to this process's own stdout/stderr.
    `prefix` goes before the interpreter (e.g. `taskset -c 0`), `wrapper` between the
    interpreter and `-m uvicorn` (e.g. `-m pyinstrument ...`).
    """

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        options: Sequence[str] = (),
        log_path: str | Path | None = None,
        capture: bool = True,
        prefix: Sequence[str] = (),
        wrapper: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.env = env
        self.host = host
        self.port = port or free_port(host)
        self.options = list(options)
        self.log_path = Path(log_path) if log_path is not None else None
        self.capture = capture
        self.prefix = list(prefix)
        self.wrapper = list(wrapper)
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._temporary_log = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def command(self) -> list[str]:
        uvicorn = uvicorn_command(
            self.app, host=self.host, port=self.port, options=self.options, wrapper=self.wrapper
        )
        return [*self.prefix, *uvicorn]

    def start(self, *, ready_path: str = "/healthz", timeout: float = 30.0) -> UvicornProcess:
        output: IO[bytes] | None = None
        if self.capture:
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="uvicorn-", suffix=".log")
                os.close(fd)
                self.log_path, self._temporary_log = Path(name), True
            output = self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter and app
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            preexec_fn=self.preexec_fn,
        )
        try:
            wait_http(self.url + ready_path, self.process, timeout, self.log)
        except BaseException:
            self.kill()
            raise
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM: uvicorn's graceful shutdown (in-flight requests finish, lifespan runs)."""
        if self.process is None:
            raise RuntimeError("not started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def stop(self, timeout: float = 25.0) -> None:
        """SIGTERM, SIGKILL after `timeout`; then the temporary log goes."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self._temporary_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> UvicornProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class WorkerProcess:
    """`python manage.py assignment_worker` in a subprocess (the assignment-job worker).

    Output goes to `log_path` (appended) or, with none, to this process's own stdout/stderr.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        log_path: str | Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.env = env
        self.log_path = Path(log_path) if log_path is not None else None
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "assignment_worker"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            preexec_fn=self.preexec_fn,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to finish or release anything."""
        if self.running:
            self.process.kill()
        if self.process is not None:
            self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 25.0) -> None:
        """SIGTERM (running chunks finish), SIGKILL after `timeout`."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_mongo(
    stack: ExitStack,
    uri: str | None,
    *,
    data_file: str | Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
):
    """MongoDB for a dev stack: `uri` when given, else a stand-in process that `stack` stops.

    Returns `(uri, standin)`; `standin` is None when `uri` was given."""
    if uri:
        return uri, None
    from standin.process import StandinProcess

    standin = stack.enter_context(
        StandinProcess(data_file=str(data_file) if data_file else None, preexec_fn=preexec_fn)
    )
    return standin.uri, standin


def run_manage(
    *args: str, env: dict[str, str], check: bool = True, **options: Any
) -> subprocess.CompletedProcess[str]:
    """`python manage.py args...` in the project root, text mode; `options` go to
    `subprocess.run` (`stdout=subprocess.PIPE`, `capture_output=True`, `timeout=`...)."""
    return subprocess.run(  # noqa: S603 - our interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=check,
        text=True,
        **options,
    )
