# Production image: uvicorn serving asgi_app.asgi:application, workers from WEB_CONCURRENCY.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WEB_CONCURRENCY=2 \
    PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY asgi_app ./asgi_app
COPY accounts ./accounts
COPY courses ./courses
COPY common ./common
COPY mongo ./mongo
COPY manage.py ./
RUN pip install . && python -c "import asgi_app"

RUN useradd --create-home --uid 10001 app
USER app

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz')"
CMD ["sh", "-c", "uvicorn asgi_app.asgi:application --host 0.0.0.0 --port ${PORT} --workers ${WEB_CONCURRENCY} --proxy-headers --timeout-graceful-shutdown 20"]
