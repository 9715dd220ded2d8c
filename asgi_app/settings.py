"""Settings: everything from the environment, safe local defaults, fail fast in production."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from asgi_app.env import env_bool, env_float, env_int, env_list, env_minutes, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment "
            "(or DEBUG=1 for a local development run)."
        )
    # Development only: a fixed, obviously-insecure key so that tokens survive restarts.
    SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from /static/, never a CDN
    "servestatic",  # its system checks; the files are served by asgi_app.staticfiles
    "asgi_app",
    "mongo",
    "accounts",
    "courses",
    "console",
]

MIDDLEWARE = [
    # Django's own middleware, adapted to run without thread hops (see asgi_app.middleware);
    # sessions, auth and messages run for the admin site and the console (/console/) only.
    "asgi_app.middleware.RequestIdMiddleware",
    "asgi_app.middleware.SecurityMiddleware",
    "asgi_app.middleware.SessionMiddleware",
    "asgi_app.middleware.CommonMiddleware",
    "asgi_app.middleware.CsrfViewMiddleware",
    "asgi_app.middleware.AuthenticationMiddleware",
    "asgi_app.middleware.MessageMiddleware",
    "asgi_app.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "asgi_app.urls"
ASGI_APPLICATION = "asgi_app.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Users live in SQL. SQLite by default; PostgreSQL (psycopg 3) via postgres://...
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent requests use several connections: wait for locks instead of failing,
    # take the write lock when a transaction starts (no deadlocking lock upgrades), and
    # test on a file (an in-memory shared-cache database fails on locks at once).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
# SQL concurrency per process: requests doing sync work (the ORM) share at most
# SQL_POOL_SIZE request threads (asgi_app.handler), each holding at most one connection; a
# request that waits SQL_POOL_TIMEOUT seconds for one answers 503. On PostgreSQL, psycopg's
# pool holds those connections open across requests. Keep
# workers x SQL_POOL_SIZE (+ admin tools) <= the server's max_connections (README).
SQL_POOL_SIZE = env_int("SQL_POOL_SIZE", 10)
SQL_POOL_TIMEOUT = env_float("SQL_POOL_TIMEOUT", 5.0)
# With as many pooled connections as request threads, a thread never queues for one: this
# bounds only the wait for PostgreSQL to accept a new connection (down: a 503 this soon).
SQL_CONNECT_TIMEOUT = env_float("SQL_CONNECT_TIMEOUT", 2.0)
if SQL_POOL_SIZE < 1 or SQL_POOL_TIMEOUT <= 0 or SQL_CONNECT_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        "SQL_POOL_SIZE must be >= 1, SQL_POOL_TIMEOUT and SQL_CONNECT_TIMEOUT > 0"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            "DB_CONN_MAX_AGE must be 0 on PostgreSQL: connections are pooled (SQL_POOL_SIZE)"
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(env_int("SQL_POOL_MIN_SIZE", 1), SQL_POOL_SIZE),
        "max_size": SQL_POOL_SIZE,
        "timeout": SQL_CONNECT_TIMEOUT,
    }
# ATOMIC_REQUESTS stays off: Django refuses it with async views. Multi-statement
# writes are single sync functions run through sync_to_async inside atomic().

AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env_list(
    "PASSWORD_HASHERS",
    [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
    ],
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `manage.py collectstatic` fills it (the image build does); DEBUG serves the apps' own
# static directories instead, see asgi_app/staticfiles.py.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
SERVESTATIC_AUTOREFRESH = False  # index the files once at startup, even in DEBUG
SERVESTATIC_USE_FINDERS = DEBUG  # development: straight from the apps, no collectstatic

# MongoDB: courses and enrollments.
MONGODB_URI = env_str("MONGODB_URI", "mongodb://127.0.0.1:27017/?directConnection=true")
MONGODB_DB = env_str("MONGODB_DB", "enrollment")
MONGO_DRIVER = env_str("MONGO_DRIVER", "pymongo")
if MONGO_DRIVER not in {"pymongo", "motor"}:
    raise ImproperlyConfigured(f"MONGO_DRIVER must be 'pymongo' or 'motor', got {MONGO_DRIVER!r}")
MONGODB_MAX_POOL_SIZE = env_int("MONGODB_MAX_POOL_SIZE", 100)
# Bounded timeouts so that an unreachable MongoDB becomes a quick 503, never a hung request.
MONGODB_SERVER_SELECTION_TIMEOUT_MS = env_int("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 2000)
MONGODB_CONNECT_TIMEOUT_MS = env_int("MONGODB_CONNECT_TIMEOUT_MS", 2000)
MONGODB_SOCKET_TIMEOUT_MS = env_int("MONGODB_SOCKET_TIMEOUT_MS", 10000)
# Production: w=majority, journaled writes; see README "Durability".
MONGODB_WRITE_CONCERN = env_str("MONGODB_WRITE_CONCERN", "majority")
MONGODB_JOURNAL = env_bool("MONGODB_JOURNAL", default=True)

ASSIGN_MAX_USERS = env_int("ASSIGN_MAX_USERS", 10_000)
# Assignment jobs (courses/jobs.py): cohorts beyond ASSIGN_MAX_USERS, run by
# `manage.py assignment_worker` processes from an arq queue on Redis (docs/scaling.md 4.7).
JOB_MAX_USERS = env_int("JOB_MAX_USERS", 1_000_000)
JOB_CHUNK_SIZE = env_int("JOB_CHUNK_SIZE", 5000)
if not 1 <= JOB_CHUNK_SIZE <= ASSIGN_MAX_USERS:
    raise ImproperlyConfigured("JOB_CHUNK_SIZE must be between 1 and ASSIGN_MAX_USERS")
JOB_QUEUE_URL = env_str("JOB_QUEUE_URL", env_str("REDIS_URL") or "redis://127.0.0.1:6379/0")
JOB_QUEUE_NAME = env_str("JOB_QUEUE_NAME", "assignment-jobs")
# A chunk that runs longer is cancelled and retried; a killed worker's chunk is picked up
# again about this long (+10 s) after it started.
JOB_CHUNK_TIMEOUT_SECONDS = env_int("JOB_CHUNK_TIMEOUT_SECONDS", 60)
JOB_MAX_TRIES = env_int("JOB_MAX_TRIES", 12)
JOB_WORKER_CONCURRENCY = env_int("JOB_WORKER_CONCURRENCY", 1)
# Every document of a job (the job, its input chunks, results and user claims) carries
# `expires_at`, its creation + this, and MongoDB's TTL monitor deletes it then
# (mongo/indexes.py): a service running million-user jobs does not grow without bound.
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 30)
if JOB_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("JOB_RETENTION_DAYS must be at least 1")
# Idempotency-Key (courses/idempotency.py): a first request's answer is kept per caller and
# key for the TTL; while it runs it holds the key for the lease, after which a retry may run
# it again (the first attempt is presumed crashed).
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 60 * 60)
IDEMPOTENCY_LEASE_SECONDS = env_int("IDEMPOTENCY_LEASE_SECONDS", 60)
# How many of its most recent members a course document embeds (docs/scaling.md, "Membership
# model"); `enrollers` counts them all, the enrollments collection lists them all.
COURSE_EMBEDDED_MEMBERS = env_int("COURSE_EMBEDDED_MEMBERS", 1000)
if COURSE_EMBEDDED_MEMBERS < 1:
    raise ImproperlyConfigured("COURSE_EMBEDDED_MEMBERS must be at least 1")

THROTTLE_DISABLED = env_bool("THROTTLE_DISABLED", default=False)
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", default=False)
# Enroll and the course list answered before Django's handler (asgi_app/fastpath.py); off
# (FAST_PATHS=0), Django answers them, with the same bytes.
FAST_PATHS = env_bool("FAST_PATHS", default=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.TokenClaimsAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["asgi_app.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["asgi_app.parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": env_str("THROTTLE_LOGIN_IP_RATE", "30/min"),
        "login_username": env_str("THROTTLE_LOGIN_USERNAME_RATE", "10/min"),
        "register_ip": env_str("THROTTLE_REGISTER_IP_RATE", "20/min"),
        "refresh_user": env_str("THROTTLE_REFRESH_USER_RATE", "10/min"),
        "refresh_ip": env_str("THROTTLE_REFRESH_IP_RATE", "60/min"),
    },
    "EXCEPTION_HANDLER": "asgi_app.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": env_minutes("JWT_ACCESS_MINUTES", 15),
    "REFRESH_TOKEN_LIFETIME": env_minutes("JWT_REFRESH_MINUTES", 7 * 24 * 60),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY", SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Course Enrollment & Assignment API",
    "DESCRIPTION": "Register, log in with JWT, browse courses and enroll; "
    "admins create courses and assign users in bulk.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The UIs' assets come from drf-spectacular-sidecar (pinned in pyproject.toml).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EnrollmentStatusEnum": ["active", "waitlisted", "completed", "withdrawn"],
        "AssignmentStatusEnum": ["enrolled", "already_enrolled", "not_found", "inactive"],
        "CourseStatusEnum": ["open", "archived"],
        "CourseListStatusEnum": ["open", "archived", "all"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "asgi_app.schema.add_operations_endpoints",
    ],
}

# The throttles' counters. Local memory is per process, so with W workers and P pods a
# limit is W x P times looser; production sets REDIS_URL to share them.
REDIS_URL = env_str("REDIS_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Production hardening; DEBUG=1 relaxes it for local runs.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
# No SECURE_PROXY_SSL_HEADER: Django would believe any client's X-Forwarded-Proto. The
# server (asgi_app.serve) takes the scheme and client address from X-Forwarded-Proto/-For
# only when the peer is one of TRUSTED_PROXIES, and Django reads the scheme from the scope.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# Body limits, enforced before Django reads a body by asgi_app.limits (answers 413).
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024)
MAX_ASSIGN_BODY_BYTES = env_int("MAX_ASSIGN_BODY_BYTES", 4 * 1024 * 1024)
# Assignment jobs: a CSV of 1,000,000 lines is spooled to disk and parsed line by line; a
# JSON body is parsed whole, so it has its own smaller bound (JOB_JSON_MAX_BYTES, a 413).
MAX_JOB_BODY_BYTES = env_int("MAX_JOB_BODY_BYTES", 48 * 1024 * 1024)
JOB_JSON_MAX_BYTES = env_int("JOB_JSON_MAX_BYTES", 16 * 1024 * 1024)
# A body must arrive whole within this many seconds of its request's head, or 408.
HTTP_BODY_TIMEOUT = env_int("HTTP_BODY_TIMEOUT", 15)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MAX_BODY_BYTES, MAX_ASSIGN_BODY_BYTES)

# CORS is off unless origins are configured (django-cors-headers); the middleware is only
# installed then, so the request path pays nothing for it by default.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/(api/|healthz|readyz).*$"
CORS_ALLOW_HEADERS = ("authorization", "content-type", "x-request-id", "idempotency-key")
CORS_EXPOSE_HEADERS = ("x-request-id", "retry-after", "idempotent-replayed")
if CORS_ALLOWED_ORIGINS:
    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(1, "corsheaders.middleware.CorsMiddleware")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "asgi_app.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "asgi_app.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # uvicorn configures its own plain-text handlers before Django starts; send its
        # lines through the JSON handler instead (dictConfig drops the loggers' handlers).
        "uvicorn": {"propagate": True},
        # Access lines come from asgi_app.access, which carries the request id.
        "uvicorn.access": {"level": "WARNING", "propagate": True},
        "asgi_app.access": {"level": env_str("ACCESS_LOG_LEVEL", "WARNING")},
    },
}
