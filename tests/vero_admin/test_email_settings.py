"""Email settings from the environment: defaults, and bad values refused loudly."""

import subprocess
import sys

import pytest

from tests.workers import BASE_DIR

SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.EMAIL_BACKEND, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.SITE_URL]))"
)


def settings_with(**env):
    import json
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "SITE_URL"))}
    result = subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**base, "DJANGO_SETTINGS_MODULE": "vero_admin.settings", **env},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode:
        return result.stderr.strip().splitlines()[-1]
    return json.loads(result.stdout)


def test_without_a_mail_server_emails_are_printed_and_link_to_the_local_server():
    backend, _, tls, site = settings_with()
    assert backend == "django.core.mail.backends.console.EmailBackend"
    assert (tls, site) == (False, "http://127.0.0.1:8000")


def test_a_mail_server_means_smtp_with_starttls_on_587():
    assert settings_with(EMAIL_HOST="smtp.example.com", SITE_URL="https://a.example.com/") == [
        "django.core.mail.backends.smtp.EmailBackend",
        587,
        True,
        "https://a.example.com",
    ]


def test_production_links_to_its_first_host_unless_told():
    env = {"DEBUG": "0", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "admin.example.com,other"}
    assert settings_with(**env)[3] == "https://admin.example.com"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT must be an integer"),
        ({"EMAIL_USE_TLS": "maybe"}, "EMAIL_USE_TLS must be one of"),
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "not both"),
        ({"DEFAULT_FROM_EMAIL": "nobody"}, "DEFAULT_FROM_EMAIL must be an email address"),
        ({"SITE_URL": "admin.example.com"}, "SITE_URL must be like https://"),
        (
            {"DEBUG": "0", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": ".example.com"},
            "SITE_URL must be set when DEBUG is off",
        ),
    ],
)
def test_bad_values_are_refused_with_the_reason(env, message):
    assert message in settings_with(**env)
