"""`make run`: migrate, start the MongoDB stand-in unless MONGODB_URI is set, seed, serve.

Deliberately does not import Django settings: it prepares the environment for the child
processes (manage.py and uvicorn). Ctrl-C stops everything it started.
"""

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM stops everything too, like Ctrl-C (the ExitStack stops the stand-in).
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    with ExitStack() as stack:
        if not env.get("MONGODB_URI"):
            from standin.process import StandinProcess

            standin = stack.enter_context(
                StandinProcess(data_file=str(ROOT / ".standin-data.bson"))
            )
            env["MONGODB_URI"] = standin.uri
            print(f"MongoDB stand-in (development only) at {standin.uri}", flush=True)
        _run("manage.py", "migrate", "--noinput", env=env)
        _run("manage.py", "seed_demo", "--if-empty", env=env)
        server = subprocess.Popen(
            # The production server definition and its limits (HOST, PORT and the rest
            # from the environment: see asgi_app/serve.py).
            [sys.executable, "-m", "asgi_app.serve"],
            cwd=ROOT,
            env=env,
        )
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.terminate()
            server.wait(timeout=15)
            return 0


if __name__ == "__main__":
    sys.exit(main())
