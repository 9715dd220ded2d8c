"""The deployment files as a reviewer reads them (no Docker engine here): the image's command
reaches uvicorn with SIGTERM, compose commits no secret and bounds every stop."""

import json
import re

import yaml

from asgi_app.serve import GuardedHttpToolsProtocol, server_limits, uvicorn_options
from tests.reliability.servers import PROJECT_ROOT

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|KEY", re.IGNORECASE)
_REQUIRED_VARIABLE = re.compile(r"\$\{[A-Z_]+:\?[^}]+\}")


def _stages() -> dict[str, list[str]]:
    """Instruction lines (continuations joined) per build stage, in order."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in DOCKERFILE.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            name = line.split()[-1] if " AS " in line.upper() else line.split()[1]
            current = stages.setdefault(name, [])
        current.append(line)
    return stages


def _instruction(lines: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in lines if line.upper().startswith(keyword)]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def test_the_image_runs_the_server_in_exec_form():
    stages = _stages()
    assert list(stages)[-1] == "app", "`docker build .` must give the API image"
    commands = _instruction(stages["app"], "CMD")
    assert len(commands) == 1
    command = json.loads(commands[0])  # exec form is a JSON array; shell form is not
    assert command == ["python", "-m", "asgi_app.serve"]
    assert not any(_instruction(lines, "ENTRYPOINT") for lines in stages.values())


def test_the_image_collects_static_files_for_the_proxy_and_leaves_the_tooling_out():
    stages = _stages()
    runs = " ".join(_instruction(stages["base"], "RUN"))
    assert "manage.py collectstatic --noinput" in runs
    assert "COPY --from=base /app/staticfiles /srv/static" in stages["proxy"]
    assert any("deploy/nginx/default.conf.template" in line for line in stages["proxy"])
    copied = " ".join(_instruction(stages["base"], "COPY"))
    for tooling in ("standin", "devstack", "bench", "loadtest", "tests"):
        assert tooling not in copied
    assert "USER app" in stages["app"]


def test_the_build_context_leaves_out_environments_databases_and_results():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {
        ".git",
        ".venv",
        "*.sqlite3",
        ".standin-data.bson*",
        ".devstack.env*",
        ".env",
    } <= ignored
    assert {"bench/results", "loadtest/results", "staticfiles"} <= ignored


def test_every_compose_command_is_exec_form_or_ends_in_exec():
    for name, service in SERVICES.items():
        command = service.get("command")
        if command is None:
            continue
        assert isinstance(command, list), f"{name}: shell-form command"
        if command[:2] == ["sh", "-c"]:
            last = command[2].split("&&")[-1].strip()
            assert last.startswith("exec "), f"{name}: the long-running step needs exec"


def test_every_service_restarts_and_stops_within_a_bounded_grace_period():
    graceful = server_limits().graceful_shutdown_timeout
    for name, service in SERVICES.items():
        assert service.get("restart"), f"{name}: no restart policy"
        assert "stop_grace_period" in service, f"{name}: no stop_grace_period"
    app = SERVICES["app"]
    assert int(app["environment"]["GRACEFUL_SHUTDOWN_TIMEOUT"]) == graceful
    assert _seconds(app["stop_grace_period"]) > graceful


def test_compose_commits_no_secret():
    for name, service in SERVICES.items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if _SECRET_NAME.search(key):
                assert _REQUIRED_VARIABLE.fullmatch(str(value)), f"{name}: {key} is committed"
    url = SERVICES["app"]["environment"]["DATABASE_URL"]
    assert _REQUIRED_VARIABLE.search(url), "the database password is committed"


def test_only_the_proxy_is_published_and_the_api_trusts_only_the_proxy():
    assert "ports" not in SERVICES["app"]
    assert SERVICES["proxy"]["ports"]
    proxy_address = SERVICES["proxy"]["networks"]["default"]["ipv4_address"]
    assert SERVICES["app"]["environment"]["TRUSTED_PROXIES"] == proxy_address
    assert SERVICES["proxy"]["environment"]["APP_UPSTREAM"] == "app:8000"


def test_the_server_bounds_heads_idle_connections_and_shutdown_by_default(monkeypatch):
    for name in ("HTTP_MAX_HEAD_BYTES", "GRACEFUL_SHUTDOWN_TIMEOUT", "TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    server_limits.cache_clear()
    try:
        options = uvicorn_options()
        assert options["http"] is GuardedHttpToolsProtocol
        assert server_limits().max_head_bytes == 16 * 1024
        assert server_limits().header_timeout == 10
        assert options["timeout_graceful_shutdown"] == 20
        assert options["timeout_keep_alive"] == 5
        assert options["limit_concurrency"] == 1000
        # Without configured proxies, nobody's X-Forwarded-* is believed.
        assert options["proxy_headers"] is False
        monkeypatch.setenv("TRUSTED_PROXIES", "172.30.0.10, 10.0.0.0/8")
        server_limits.cache_clear()
        options = uvicorn_options()
        assert options["proxy_headers"] is True
        assert options["forwarded_allow_ips"] == ["172.30.0.10", "10.0.0.0/8"]
    finally:
        server_limits.cache_clear()
