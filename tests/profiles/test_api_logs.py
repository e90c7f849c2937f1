"""An API key sent in the query string never reaches our logs (issue 17)."""

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from profiles.api_logs import REDACTED, RedactApiKeys, redact_keys
from profiles.models import Profile
from profiles.services import api_key_create
from tests import workers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"POST /api/v2/users/track?tracking_api_key=s3cr3t HTTP/1.1" 200 35',
            f'"POST /api/v2/users/track?tracking_api_key={REDACTED} HTTP/1.1" 200 35',
        ),
        (
            "DELETE /api/v2/users/delete?id=ada-1000&auth_token=s3cr3t&x=1",
            f"DELETE /api/v2/users/delete?id=ada-1000&auth_token={REDACTED}&x=1",
        ),
        ("/v1/batch?writeKey=s3cr3t", f"/v1/batch?writeKey={REDACTED}"),
        ("/v1/batch?write%4Bey=s3cr3t", f"/v1/batch?write%4Bey={REDACTED}"),  # writeKey
        ("/x?tracking%5Fapi%5Fkey=s3cr3t", f"/x?tracking%5Fapi%5Fkey={REDACTED}"),
        ("/x?tracking_api_key=", f"/x?tracking_api_key={REDACTED}"),
        # Refused by the API (the name is read exactly), yet the key is as secret.
        ("/x?TRACKING_API_KEY=s3cr3t", f"/x?TRACKING_API_KEY={REDACTED}"),
        ("/x?a=1&WriteKey=s3cr3t", f"/x?a=1&WriteKey={REDACTED}"),
        ("/x?tracking_api_key%00=s3cr3t", f"/x?tracking_api_key%00={REDACTED}"),
        ("/profiles/?q=tracking_api_key=s3cr3t", "/profiles/?q=tracking_api_key=s3cr3t"),
        ("/api/v2/users/track?id=1&data=2", "/api/v2/users/track?id=1&data=2"),
    ],
)
def test_key_parameters_are_redacted_and_nothing_else(text, expected):
    assert redact_keys(text) == expected


def test_the_filter_redacts_a_records_arguments_as_tuple_and_as_mapping():
    runserver = logging.LogRecord(
        "django.server", logging.INFO, "", 0, '"%s" %s %s',
        ("GET /v1/batch?writeKey=s3cr3t HTTP/1.1", "200", "10"), None,
    )  # fmt: skip
    assert RedactApiKeys().filter(runserver)
    assert "s3cr3t" not in runserver.getMessage()
    gunicorn = logging.LogRecord(
        "gunicorn.access", logging.INFO, "", 0, '"%(r)s" %(s)s', None, None
    )
    gunicorn.args = {"r": "GET /v1/batch?writeKey=s3cr3t HTTP/1.1", "s": "200"}
    assert RedactApiKeys().filter(gunicorn)
    assert gunicorn.getMessage() == f'"GET /v1/batch?writeKey={REDACTED} HTTP/1.1" 200'


def test_the_request_loggers_carry_the_filter():
    for name in ("django.server", "django.request", "gunicorn.access"):
        assert any(isinstance(f, RedactApiKeys) for f in logging.getLogger(name).filters), name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(command: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": workers.test_database_url(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command,
        cwd=workers.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_until_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError("the server did not start")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["runserver", "gunicorn"])
def test_a_key_in_the_query_string_is_not_in_the_access_log(server):
    _, key = api_key_create(name="Website", scope="track")
    port = _free_port()
    python = sys.executable
    command = {
        "runserver": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "gunicorn": [
            os.path.join(os.path.dirname(python), "gunicorn"),
            "vero_admin.wsgi",
            "-w", "1",
            "-b", f"127.0.0.1:{port}",
            "--access-logfile", "-",
        ],
    }[server]  # fmt: skip
    process = _serve(command, port)
    try:
        _wait_until_up(port, process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/users/track?tracking_api_key={key}",
            data=b'{"id": "logged-1"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        assert urllib.request.urlopen(request, timeout=10).status == 200  # noqa: S310
        time.sleep(0.5)  # let the access line be written
    finally:
        os.killpg(process.pid, 15)
        log = process.communicate(timeout=20)[0]
    assert Profile.objects.filter(user_id="logged-1").exists()
    assert f"/api/v2/users/track?tracking_api_key={REDACTED}" in log, log
    assert key not in log


@pytest.mark.django_db
def test_a_failure_on_our_side_is_a_json_500_logged_without_the_query(client, monkeypatch, caplog):
    from profiles import ingestion

    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ingestion, "profile_identify", explode)
    _, key = api_key_create(name="Website", scope="track")
    with caplog.at_level(logging.ERROR):
        response = client.post(
            f"/api/v2/users/track?tracking_api_key={key}",
            '{"id": "u1"}',
            content_type="application/json",
        )
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert "API error on POST /api/v2/users/track" in caplog.text
    assert "boom" in caplog.text
    assert key not in caplog.text
