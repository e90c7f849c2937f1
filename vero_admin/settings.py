"""Settings for vero_admin: one file, read from the environment.

Development needs no configuration at all: DEBUG is on and, without
DATABASE_URL, an embedded PostgreSQL server is started in ``.pgdata/``.
Production sets DEBUG=0, SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL; the
helpers below refuse bad values loudly instead of guessing.
"""

import os
import re
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no; got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None


def env_path(name: str, default: Path) -> Path:
    """A directory path; a relative one is taken from the project directory."""
    raw = os.environ.get(name, "").strip()
    path = BASE_DIR / raw if raw else default
    if path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"{name} must name a directory; {str(path)!r} is a file.")
    return path


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_header(name: str) -> str:
    """An HTTP header name (``X-Forwarded-For``), or "" when unset."""
    raw = os.environ.get(name, "").strip()
    if raw and not re.fullmatch(r"[A-Za-z0-9-]+", raw):
        raise ImproperlyConfigured(f"{name} must be an HTTP header name; got {raw!r}")
    return raw


def env_email(name: str, default: str) -> str:
    """An address, optionally with a display name ("Name <a@b.example>")."""
    from email.utils import parseaddr

    raw = os.environ.get(name)
    if raw is None:
        return default
    _, address = parseaddr(raw)
    if "@" not in address or any(c.isspace() for c in address):
        raise ImproperlyConfigured(f"{name} must be an email address; got {raw!r}")
    return raw.strip()


def env_site_url(name: str, *, debug: bool, allowed_hosts: list[str]) -> str:
    """The site's own URL (scheme and host, no trailing slash). Without it,
    development links to the local server and production to the first host
    of ALLOWED_HOSTS over https; a wildcard host cannot be linked to."""
    from urllib.parse import urlsplit

    raw = os.environ.get(name)
    if raw is None:
        if debug:
            return f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        host = next(iter(allowed_hosts), "")
        if not host or host.startswith(".") or "*" in host:
            raise ImproperlyConfigured(
                f"{name} must be set when DEBUG is off and ALLOWED_HOSTS starts with {host!r}."
            )
        return f"https://{host}"
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} must be like https://admin.example.com; got {raw!r}")
    return raw.strip().rstrip("/")


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "vero_admin",
    "profiles",
    "messaging",
    "segments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "vero_admin.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Pages for a logged-in user: private, no-store, Vary on htmx's headers.
    "vero_admin.middleware.PrivatePagesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A query string no page can read: the 400 page, with its reason.
    "vero_admin.middleware.BadQueryMiddleware",
    # Last: a missing page gets the site's 404 page even with DEBUG on (see its docstring).
    "vero_admin.middleware.NotFoundPageMiddleware",
]

ROOT_URLCONF = "vero_admin.urls"

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

WSGI_APPLICATION = "vero_admin.wsgi.application"

if os.environ.get("DATABASE_URL"):
    _database_url = os.environ["DATABASE_URL"]
else:
    from vero_admin.embedded_db import database_url

    _database_url = database_url()
DATABASES = {
    "default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
}
DATABASES["default"].setdefault("TEST", {})


def _session_options(*, qcluster: bool) -> list[str]:
    """Server settings for our sessions (libpq ``options``).

    The server's TCP keepalives end the session of a host that vanished in
    about 2 minutes instead of the kernel's default 2 hours; a deletion
    runner's advisory lock dies with its session, so the watchdog can resume
    the job. (Both are ignored on a Unix socket, as with the embedded server.)

    The workers' sessions also end when idle for Q_IDLE_SESSION_TIMEOUT
    seconds, or idle inside a transaction for Q_IDLE_IN_TRANSACTION_TIMEOUT:
    a frozen worker (a paused VM, a stopped process) answers keepalives but
    must not keep a job's lock. django-q2 calls close_old_connections before
    each use and CONN_HEALTH_CHECKS replaces a session the server ended, so
    idle workers reconnect quietly. The web server and the tests are left
    without these timeouts: nothing there holds a lock while idle, and a
    test's transaction may rightly stay idle while it looks around.
    """
    options = [
        "-c tcp_keepalives_idle=60",
        "-c tcp_keepalives_interval=10",
        "-c tcp_keepalives_count=6",
    ]
    if qcluster:
        idle = env_int("Q_IDLE_SESSION_TIMEOUT", 600)
        idle_in_transaction = env_int("Q_IDLE_IN_TRANSACTION_TIMEOUT", 60)
        options.append(f"-c idle_session_timeout={idle}s")
        options.append(f"-c idle_in_transaction_session_timeout={idle_in_transaction}s")
    return options


_db_options = DATABASES["default"].setdefault("OPTIONS", {})
# The client's keepalives: a worker notices a database host that vanished.
_db_options.setdefault("keepalives", 1)
_db_options.setdefault("keepalives_idle", 60)
_db_options.setdefault("keepalives_interval", 10)
_db_options.setdefault("keepalives_count", 6)
_db_options["options"] = " ".join(
    [
        *filter(None, [_db_options.get("options", "")]),
        *_session_options(qcluster=sys.argv[1:2] == ["qcluster"]),
    ]
)
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"]["NAME"] = os.environ["TEST_DATABASE_NAME"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "segments:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# A reverse proxy in front of the dashboard, off by default: the header it
# puts the client's address in (X-Forwarded-For, X-Real-IP) and how many
# proxies append to it. Only then is that header read (login throttling,
# vero_admin/login_throttle.py) and X-Forwarded-Proto trusted to say HTTPS;
# without a proxy, a client could set either.
VERO_TRUSTED_PROXY_HEADER = env_header("VERO_TRUSTED_PROXY_HEADER")
VERO_TRUSTED_PROXY_HOPS = env_int("VERO_TRUSTED_PROXY_HOPS", 1)
if VERO_TRUSTED_PROXY_HOPS < 1:
    raise ImproperlyConfigured("VERO_TRUSTED_PROXY_HOPS must be 1 or more.")

# Production hardening; all of it is inert while DEBUG is on.
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    if VERO_TRUSTED_PROXY_HEADER:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Background work. A deletion task works in slices far shorter than `timeout`
# and re-enqueues itself; `retry` must exceed `timeout`, or the ORM broker hands
# a still-running task to a second worker (checked in SegmentsConfig.ready()).
Q_CLUSTER = {
    "name": "vero_admin",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": env_int("Q_TIMEOUT", 120),
    "retry": env_int("Q_RETRY", 180),
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "poll": 0.2,
    "ack_failures": True,
    "label": "Background tasks",
}
# A deletion task works this long, then continues in a fresh task; a running
# job whose heartbeat is older than DELETION_STALE_AFTER_SECONDS has lost its
# worker and is resumed by the watchdog.
DELETION_SLICE_SECONDS = env_int("DELETION_SLICE_SECONDS", 20)
DELETION_STALE_AFTER_SECONDS = env_int("DELETION_STALE_AFTER_SECONDS", 90)
# A job whose runner is provably gone (its lock free, no task of it queued or
# started since its last heartbeat) is resumed after this much quiet, without
# waiting for staleness; `serve` looks every DELETION_SWEEP_SECONDS.
DELETION_GONE_AFTER_SECONDS = env_int("DELETION_GONE_AFTER_SECONDS", 5)
DELETION_SWEEP_SECONDS = env_int("DELETION_SWEEP_SECONDS", 5)
# A runner that holds the job's lock but has been silent this long (frozen,
# or its host vanished) has its session terminated by the watchdog.
DELETION_TERMINATE_AFTER_SECONDS = env_int(
    "DELETION_TERMINATE_AFTER_SECONDS", 3 * DELETION_STALE_AFTER_SECONDS
)
# Profiles another session keeps locked are set aside and retried at the end;
# when only they are left, the job waits this long for them, then stops with
# the reason (who holds them) so an Editor can resume it later.
DELETION_LOCK_WAIT_SECONDS = env_int("DELETION_LOCK_WAIT_SECONDS", 300)
# Batch runners one deletion job runs in parallel, each over its own part of
# the snapshot (segments.deletion.services). 1 by default: a batch's work is
# done by PostgreSQL, so a second runner only helps while the database has a
# core to spare, and takes it from ingestion when it has not (README,
# "Parallel runners").
DELETION_RUNNERS = env_int("DELETION_RUNNERS", 1)
if not 1 <= DELETION_RUNNERS <= 16:
    raise ImproperlyConfigured(f"DELETION_RUNNERS must be from 1 to 16; got {DELETION_RUNNERS}")
# Every ended deletion's receipt is also written here as a file, outside the
# database, so `manage.py reapply_deletions` can redo the deletions a restored
# backup brings back. Keep it out of the database's backups' reach: a restore
# must not roll it back too.
DELETION_RECEIPTS_DIR = env_path("DELETION_RECEIPTS_DIR", BASE_DIR / "var" / "deletion-receipts")

if env_bool("Q_SYNC", False):
    Q_CLUSTER["sync"] = True

DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "demo")

# Email: the person who confirmed a deletion hears when it ends. Without
# EMAIL_HOST, emails are printed by the process that sends them (the worker's
# output under `make run`); with it, they go out over SMTP.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
# STARTTLS on 587 unless told otherwise; EMAIL_USE_SSL=1 for TLS from the start (465).
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", bool(EMAIL_HOST) and not EMAIL_USE_SSL)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set one of EMAIL_USE_TLS and EMAIL_USE_SSL, not both.")
EMAIL_PORT = env_int("EMAIL_PORT", 465 if EMAIL_USE_SSL else 587)
# Seconds per network operation: a send never holds a worker for long.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)
if os.environ.get("EMAIL_FILE_PATH"):
    EMAIL_FILE_PATH = os.environ["EMAIL_FILE_PATH"]
DEFAULT_FROM_EMAIL = env_email("DEFAULT_FROM_EMAIL", "vero_admin <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The address of this dashboard as its users reach it, for links in emails.
SITE_URL = env_site_url("SITE_URL", debug=DEBUG, allowed_hosts=ALLOWED_HOSTS)
# A sender owns a deletion notice this long (far more than a send takes); a
# notice whose sender died is sent by the next sweep after that. A failed
# send is tried again DELETION_NOTICE_RETRY_SECONDS later, three times in all.
DELETION_NOTICE_LEASE_SECONDS = env_int("DELETION_NOTICE_LEASE_SECONDS", 10 * EMAIL_TIMEOUT)
DELETION_NOTICE_RETRY_SECONDS = env_int("DELETION_NOTICE_RETRY_SECONDS", 300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "vero_admin": {"handlers": ["console"], "level": "INFO"},
        "segments": {"handlers": ["console"], "level": "INFO"},
        "profiles": {"handlers": ["console"], "level": "INFO"},
    },
}
