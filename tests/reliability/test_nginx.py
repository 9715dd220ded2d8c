"""The front door: Debian's nginx with deploy/nginx/default.conf.template in front of the API
(asgi_app.serve) on loopback, as docker-compose.yml runs them. Oversized heads, stalled
heads and bodies, forwarded headers and static files, through the proxy.

nginx runs from a temporary prefix with its own pid, logs and temp paths, on a free port.
It needs Debian's `nginx` (`nginx-light`) package, which `.ci/run` installs; without it
these tests are skipped.
"""

import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.stack import free_port
from tests.reliability import rawhttp
from tests.reliability.conftest import ON_POSTGRES, processes
from tests.reliability.servers import PROJECT_ROOT, UvicornServer, server_env

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "default.conf.template"
KIB = 1024
# .ci/run installs nginx and sets REQUIRE_NGINX=1: there, a missing nginx fails, never skips.
REQUIRED = os.environ.get("REQUIRE_NGINX") == "1"
needs_nginx = pytest.mark.skipif(
    NGINX is None and not REQUIRED,
    reason="needs Debian's nginx (apt-get install nginx-light; .ci/run does)",
)
pytestmark = [processes, needs_nginx]

_WRAPPER = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/default.conf;
}}
"""


def render_template(variables: dict[str, str], timeout: str) -> str:
    """What the nginx image does with the template (envsubst of the given names only),
    with the client timeouts shortened for the test."""
    text = TEMPLATE.read_text()
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, "a template variable was left unset"
    text, count = re.subn(r"(client_(?:header|body)_timeout) \d+s;", rf"\1 {timeout};", text)
    assert count == 2
    return text


class Nginx:
    def __init__(self, upstream_port: int, static_root: Path, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        variables = {
            "APP_UPSTREAM": f"127.0.0.1:{upstream_port}",
            "NGINX_PORT": f"127.0.0.1:{self.port}",
            "STATIC_ROOT": str(static_root),
        }
        (tmp / "default.conf").write_text(render_template(variables, "2s"))
        # As root (CI containers), workers would switch to `nobody`, who cannot use tmp.
        user = "user root;" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(_WRAPPER.format(tmp=tmp, user=user))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Nginx":
        command = [NGINX, "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf")]
        command += ["-e", str(self.tmp / "error.log")]
        self.process = subprocess.Popen(  # noqa: S603 - Debian's nginx, our config
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()}")
            try:
                rawhttp.connect(self.port, timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def error_log(self) -> str:
        return (self.tmp / "error.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def front_door(sqlite_template, standin_uri, tmp_path_factory):
    """nginx → uvicorn, the API trusting forwarded headers from nginx (127.0.0.1) only."""
    if ON_POSTGRES:
        pytest.skip("process-level test: runs once, in the SQLite pass of CI")
    if NGINX is None:
        pytest.fail("REQUIRE_NGINX=1 but nginx is not installed")
    path, _ = sqlite_template
    base = tmp_path_factory.mktemp("front-door")
    db = base / "db.sqlite3"
    shutil.copyfile(path, db)
    static_root = base / "static"
    (static_root / "admin" / "css").mkdir(parents=True)
    (static_root / "admin" / "css" / "base.css").write_text("body { color: #333; }\n")
    env = server_env(
        DATABASE_URL=f"sqlite:///{db}",
        MONGODB_URI=standin_uri,
        MONGODB_DB=f"nginx_{uuid.uuid4().hex[:8]}",
        TRUSTED_PROXIES="127.0.0.1",
        SECURE_HSTS_SECONDS="3600",
        THROTTLE_DISABLED="0",
        THROTTLE_REGISTER_IP_RATE="3/min",
        HTTP_HEADER_TIMEOUT="2",
        HTTP_BODY_TIMEOUT="2",
    )
    prefix = base / "nginx"
    prefix.mkdir()
    with UvicornServer(env) as app, Nginx(app.port, static_root, prefix) as nginx:
        nginx.app = app
        nginx.db = db
        yield nginx


def test_requests_pass_through_and_static_files_are_served_by_nginx(front_door):
    with httpx.Client(base_url=front_door.url, timeout=10) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert "server" not in health.headers or "nginx/" not in health.headers["server"]
        css = client.get("/static/admin/css/base.css")
        assert css.status_code == 200
        assert css.text == "body { color: #333; }\n"
        assert css.headers["content-type"].startswith("text/css")
        assert "x-request-id" not in css.headers  # answered by nginx, not the API
        assert client.get("/static/admin/css/missing.css").status_code == 404


def test_a_huge_header_is_refused_by_nginx_which_goes_on_serving(front_door):
    sock = rawhttp.connect(front_door.port)
    with sock:
        for piece in rawhttp.huge_header_request(4 * KIB * KIB):
            if not rawhttp.send_quietly(sock, piece):
                break
        reply = rawhttp.read_until_closed(sock)
    assert reply.closed
    assert reply.status in (400, 431, None), reply.head
    assert httpx.get(front_door.url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(rawhttp.get("/healthz?q=" + "a" * 9 * KIB), 414, id="request line"),
        pytest.param(rawhttp.get("/healthz", headers={"X-Big": "b" * 9 * KIB}), 400, id="header"),
    ],
)
def test_a_head_over_8_kib_is_refused(front_door, request_bytes, status):
    with rawhttp.connect(front_door.port) as sock:
        sock.sendall(request_bytes)
        reply = rawhttp.read_until_closed(sock)
    assert reply.status == status, reply.head
    assert reply.closed


def test_a_partial_head_is_closed_after_the_header_timeout(front_door):
    with rawhttp.connect(front_door.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        reply = rawhttp.read_until_closed(sock)
    assert reply.closed
    assert reply.status in (408, None), reply.head  # nginx closes without a word


def test_a_stalled_body_never_reaches_the_api_and_is_cut_off(front_door):
    with sqlite3.connect(front_door.db) as connection:
        before = connection.execute("SELECT COUNT(*) FROM accounts_user").fetchone()[0]
    with rawhttp.connect(front_door.port) as sock:
        sock.sendall(
            b"POST /api/auth/register/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"username": "stalled", '
        )
        reply = rawhttp.read_until_closed(sock)
    assert reply.closed
    assert reply.status in (408, None), reply.head
    assert "client timed out" in front_door.error_log()
    with sqlite3.connect(front_door.db) as connection:
        after = connection.execute("SELECT COUNT(*) FROM accounts_user").fetchone()[0]
    assert after == before


def test_a_body_over_the_largest_limit_is_413_at_nginx(front_door):
    response = httpx.post(
        front_door.url + "/api/auth/register/",
        content=b" " * (4 * KIB * KIB + 1),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert "x-request-id" not in response.headers  # nginx refused it, the API never saw it


def test_forwarded_headers_from_a_client_are_overwritten_by_nginx(front_door):
    headers, statuses = rawhttp.spoofed_forwarding(front_door.url)
    # A client claiming HTTPS over plain HTTP: nginx says "http", the API believes nginx
    assert "strict-transport-security" not in headers
    # A client inventing addresses: nginx sends its real one, so the per-IP throttle holds
    assert statuses == [400, 400, 400, 429, 429]


def test_the_api_believes_the_proxy_it_trusts(front_door):
    """Direct to uvicorn from 127.0.0.1 (the trusted proxy's address): the scheme is taken."""
    https = httpx.get(
        front_door.app.url + "/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=10
    )
    assert https.headers["strict-transport-security"] == "max-age=3600"
