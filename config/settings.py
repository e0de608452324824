"""Gatehouse settings: one module, driven by the environment (and an optional `.env`).

With nothing set it runs on embedded defaults (SQLite under var/, in-memory channel layer,
local-memory cache, DEBUG on). Production sets DATABASE_URL, REDIS_URL, SECRET_KEY,
ALLOWED_HOSTS and GATEHOUSE_ENCRYPTION_KEYS; with DEBUG off a missing one stops the start.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("GATEHOUSE_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

_REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "ALLOWED_HOSTS", "GATEHOUSE_ENCRYPTION_KEYS")
if not DEBUG:
    _missing = [name for name in _REQUIRED_IN_PRODUCTION if not env.str(name, default="")]
    if _missing:
        raise ImproperlyConfigured(
            "Gatehouse refuses to start with DEBUG off: set these environment variables: "
            + ", ".join(_missing)
        )


def _development_secret_key() -> str:
    """A random key kept under var/, so sessions survive restarts of the development server."""
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "accounts",
    "providers",
    "chats",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------------
_SQLITE_URL = f"sqlite:///{VAR_DIR / 'gatehouse.sqlite3'}"
DATABASES = {"default": env.db("DATABASE_URL", default=_SQLITE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions + WAL let concurrent writers queue instead of failing with
    # "database is locked" when the development server handles several streams at once.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Under ASGI every request's sync code may run in its own thread, and a connection per
    # thread exhausts PostgreSQL under load: a bounded pool per process instead (Django's
    # psycopg pool; persistent connections must then be off).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=30.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads for the database work of async code (config.dbhop): the gateway's and the chat
# sockets' hops run side by side instead of queueing in one thread. SQLite has one write lock
# for everyone, so there it stays a single thread (0: asgiref's shared one).
_DB_IS_SQLITE = DATABASES["default"]["ENGINE"].endswith("sqlite3")
GATEHOUSE_DB_THREADS = env.int("GATEHOUSE_DB_THREADS", default=0 if _DB_IS_SQLITE else 4)
# The statements on the way to a first token (token lookup, chat gate and history, budget
# reservation, a message's rows) run on the event loop with psycopg's async connections instead
# (config.apg). PostgreSQL only.
GATEHOUSE_DB_ASYNC = env.bool("GATEHOUSE_DB_ASYNC", default=not _DB_IS_SQLITE)

# --- Redis: cache and channel layer ---------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    from config.redis_connection import CancelSafeConnection

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gh",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A socket waits for group messages with a blocking pop of up to 5 s; redis-py 8
            # reads with a 5 s socket timeout by default, which tore idle sockets down with
            # 1011 every few seconds (django/channels_redis#422). The read may wait longer, but
            # not much: a receive cancelled mid-read (a socket closing) can linger until it.
            # Sends that keep a cancellation on Python 3.11 (config/redis_connection.py); a
            # rediss:// URL sets redis-py's TLS connection instead.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 10,
                        "connection_class": CancelSafeConnection,
                    }
                ],
                "prefix": "gh:ws",
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse API",
    "DESCRIPTION": "Organisation-wide LLM portal and gateway.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Gatehouse ------------------------------------------------------------------------------
# Fernet keys, newest first. In DEBUG a key derived from SECRET_KEY stands in when none is set.
GATEHOUSE_ENCRYPTION_KEYS = env.list("GATEHOUSE_ENCRYPTION_KEYS", default=[])
if not GATEHOUSE_ENCRYPTION_KEYS and DEBUG:
    GATEHOUSE_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(
            hashlib.sha256(b"gatehouse-dev-encryption:" + SECRET_KEY.encode()).digest()
        ).decode()
    ]
GATEHOUSE_PROVIDER_ALLOWED_HOSTS = env.list("GATEHOUSE_PROVIDER_ALLOWED_HOSTS", default=[])
GATEHOUSE_PLATFORM_CREDENTIALS = env.bool("GATEHOUSE_PLATFORM_CREDENTIALS", default=True)
GATEHOUSE_SIMULATOR_MOUNT = env.bool("GATEHOUSE_SIMULATOR_MOUNT", default=DEBUG)
GATEHOUSE_DEFAULT_TEMPERATURE = env.float("GATEHOUSE_DEFAULT_TEMPERATURE", default=0.7)
GATEHOUSE_DEFAULT_MAX_TOKENS = env.int("GATEHOUSE_DEFAULT_MAX_TOKENS", default=1024)
GATEHOUSE_TIMEOUT_CONNECT = env.float("GATEHOUSE_TIMEOUT_CONNECT", default=5.0)
GATEHOUSE_TIMEOUT_FIRST_TOKEN = env.float("GATEHOUSE_TIMEOUT_FIRST_TOKEN", default=30.0)
GATEHOUSE_TIMEOUT_CHUNK_GAP = env.float("GATEHOUSE_TIMEOUT_CHUNK_GAP", default=30.0)
GATEHOUSE_TIMEOUT_TOTAL = env.float("GATEHOUSE_TIMEOUT_TOTAL", default=300.0)
GATEHOUSE_RETRY_ATTEMPTS = env.int("GATEHOUSE_RETRY_ATTEMPTS", default=3)
GATEHOUSE_RETRY_BASE_DELAY = env.float("GATEHOUSE_RETRY_BASE_DELAY", default=0.25)
GATEHOUSE_RETRY_MAX_DELAY = env.float("GATEHOUSE_RETRY_MAX_DELAY", default=4.0)
GATEHOUSE_RETRY_AFTER_CAP = env.float("GATEHOUSE_RETRY_AFTER_CAP", default=10.0)
GATEHOUSE_BREAKER_THRESHOLD = env.int("GATEHOUSE_BREAKER_THRESHOLD", default=5)
GATEHOUSE_BREAKER_COOLDOWN = env.float("GATEHOUSE_BREAKER_COOLDOWN", default=30.0)
# Seconds a process trusts a clean breaker read (no cache round trip per call meanwhile).
GATEHOUSE_BREAKER_CLEAN_TRUST = env.float("GATEHOUSE_BREAKER_CLEAN_TRUST", default=1.0)
GATEHOUSE_MODELS_CACHE_TTL = env.int("GATEHOUSE_MODELS_CACHE_TTL", default=300)
# Cost controls. A reservation outlives any call that could still settle it.
GATEHOUSE_RESERVATION_TTL = env.float(
    "GATEHOUSE_RESERVATION_TTL", default=max(600.0, 2 * GATEHOUSE_TIMEOUT_TOTAL)
)
GATEHOUSE_RATELIMIT_FAIL_OPEN = env.bool("GATEHOUSE_RATELIMIT_FAIL_OPEN", default=False)
GATEHOUSE_RATELIMIT_TIMEOUT = env.float("GATEHOUSE_RATELIMIT_TIMEOUT", default=0.5)
GATEHOUSE_RATELIMIT_PREFIX = env.str("GATEHOUSE_RATELIMIT_PREFIX", default="gh:rl")
GATEHOUSE_WEBHOOK_ATTEMPTS = env.int("GATEHOUSE_WEBHOOK_ATTEMPTS", default=5)
GATEHOUSE_WEBHOOK_BACKOFF = env.float("GATEHOUSE_WEBHOOK_BACKOFF", default=2.0)
GATEHOUSE_WEBHOOK_TIMEOUT = env.float("GATEHOUSE_WEBHOOK_TIMEOUT", default=5.0)

# Platform-wide credentials from the environment, offered to every organisation (see README).
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
OLLAMA_BASE_URL = env.str("OLLAMA_BASE_URL", default="")
DEFAULT_PROVIDER = env.str("DEFAULT_PROVIDER", default="")

# --- Email ----------------------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gatehouse@localhost")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)

# --- Security (production) ------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.logredact.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# Model limits used when neither the provider nor an admin says otherwise.
GATEHOUSE_DEFAULT_CONTEXT_WINDOW = env.int("GATEHOUSE_DEFAULT_CONTEXT_WINDOW", default=128000)
GATEHOUSE_DEFAULT_MAX_OUTPUT_TOKENS = env.int("GATEHOUSE_DEFAULT_MAX_OUTPUT_TOKENS", default=16384)

# --- Content-Security-Policy (django-csp) ---------------------------------------------------
# The portal runs no inline script and loads nothing from elsewhere: model output that slipped
# past the sanitiser still could not run. The Swagger UI at /api/docs/ loads its bundle from a
# CDN with an inline bootstrap script, so it is left out of the policy.
from csp.constants import NONE, SELF  # noqa: E402

MIDDLEWARE = [*MIDDLEWARE, "csp.middleware.CSPMiddleware"]
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/docs/"],
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# The usage report's covering index is for PostgreSQL; SQLite (development) just ignores its
# non-key columns.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
