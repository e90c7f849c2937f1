"""Production settings, as `DEBUG=0` turns them on, checked in a fresh process."""

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.workers import BASE_DIR

PRODUCTION = {"DEBUG": "0", "ALLOWED_HOSTS": "example.com"}


def production_env(**extra) -> dict:
    # The test command's own switch (pytest runs in an event loop) is no production setting.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {**env, **PRODUCTION, **extra}


def run(*args, secret_key=None):
    env = production_env(SECRET_KEY=secret_key or secrets.token_urlsafe(50))
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )


def test_check_deploy_is_clean():
    result = run("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_only_objects_to_a_weak_secret_key():
    result = run("manage.py", "check", "--deploy", secret_key="x")
    assert result.returncode == 0, result.stderr
    assert "security.W009" in result.stderr
    assert "1 issue" in result.stderr


def test_production_needs_a_secret_key():
    env = production_env()
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_cookies_are_secure_and_hsts_is_on():
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({name: getattr(s, name) for name in ("
        "'DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
        "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', "
        "'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS')}))"
    )
    env_settings = [
        "-c",
        f"import os; os.environ['DJANGO_SETTINGS_MODULE']='vero_admin.settings'; {code}",
    ]
    result = run(*env_settings)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
    }


def _setting(name: str, **env) -> object:
    code = (
        "import os, json; os.environ['DJANGO_SETTINGS_MODULE']='vero_admin.settings'; "
        "import django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps(getattr(s, {name!r}, None)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=production_env(SECRET_KEY=secrets.token_urlsafe(50), **env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_forwarded_proto_header_is_trusted_only_behind_a_configured_proxy():
    assert _setting("SECURE_PROXY_SSL_HEADER") is None
    behind = _setting("SECURE_PROXY_SSL_HEADER", VERO_TRUSTED_PROXY_HEADER="X-Forwarded-For")
    assert behind == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_a_bad_proxy_header_name_is_refused_loudly():
    env = production_env(SECRET_KEY="x" * 60, VERO_TRUSTED_PROXY_HEADER="X-Forwarded-For: 1")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "VERO_TRUSTED_PROXY_HEADER must be an HTTP header name" in result.stderr


@pytest.mark.django_db
def test_every_response_carries_a_policy_that_allows_only_our_own_scripts(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in directives["script-src"]
    assert client.get("/segments/")["Content-Security-Policy"] == policy
    assert client.get("/api/v2/heartbeat")["Content-Security-Policy"] == policy
