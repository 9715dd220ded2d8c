# syntax=docker/dockerfile:1
# Images of docker-compose.yml: `app` (the default, last stage) serves the API with
# `python -m asgi_app.serve` (uvicorn with the limits of asgi_app/serve.py, WEB_CONCURRENCY
# workers, non-root, no stand-in or dev tools installed); `proxy` is nginx in front of it
# with the collected static files (deploy/nginx/default.conf.template).

FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY asgi_app ./asgi_app
COPY accounts ./accounts
COPY courses ./courses
COPY console ./console
COPY common ./common
COPY mongo ./mongo
COPY manage.py ./
COPY requirements/prod.lock ./requirements/prod.lock
# Pinned and hashed (requirements/prod.lock, `make lock`), then the project without deps.
RUN pip install --require-hashes -r requirements/prod.lock \
    && pip install --no-deps . && python -c "import asgi_app"
# The admin's (and any app's) static files, for the proxy stage. The key only lets the
# settings load for this command; it is not kept in the image.
RUN DEBUG=0 SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput


FROM nginx:1.27 AS proxy
COPY deploy/nginx/default.conf.template /etc/nginx/templates/default.conf.template
COPY --from=base /app/staticfiles /srv/static
ENV APP_UPSTREAM=app:8000 \
    NGINX_PORT=80 \
    STATIC_ROOT=/srv/static
EXPOSE 80


FROM base AS app
ENV HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=2
RUN useradd --create-home --uid 10001 app
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"]
# Exec form: uvicorn is PID 1 and receives SIGTERM (graceful, GRACEFUL_SHUTDOWN_TIMEOUT).
CMD ["python", "-m", "asgi_app.serve"]
