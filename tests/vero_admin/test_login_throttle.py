from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import PASSWORD
from vero_admin import login_throttle
from vero_admin.models import LoginAttempt

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def attempt(client, username="alice", password=None, **extra):
    data = {"username": username, "password": password or "not the password"}
    return client.post(LOGIN, data, **extra)


def fail_five_times(client, username="alice", **extra):
    for _ in range(login_throttle.FAILURE_LIMIT):
        response = attempt(client, username, **extra)
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content


def test_five_failures_refuse_the_sixth_attempt_with_429(client, alice):
    fail_five_times(client)
    response = attempt(client)
    assert response.status_code == 429
    assert b"Too many failed login attempts" in response.content
    assert b"try again in 15 minutes" in response.content
    assert 890 <= int(response["Retry-After"]) <= 900


def test_the_right_password_is_refused_too_while_locked_out(client, alice):
    fail_five_times(client)
    response = attempt(client, password=PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_refused_attempt_does_not_check_the_password(client, alice, monkeypatch):
    fail_five_times(client)
    checked = []
    monkeypatch.setattr(
        "django.contrib.auth.forms.authenticate", lambda *a, **kw: checked.append(kw)
    )
    response = attempt(client, password=PASSWORD)
    assert response.status_code == 429
    assert checked == []
    # The refusal leaves no row behind, so it does not lengthen the wait.
    assert LoginAttempt.objects.count() == login_throttle.FAILURE_LIMIT


def test_four_failures_do_not_lock_anyone_out(client, alice):
    for _ in range(4):
        attempt(client)
    response = attempt(client, password=PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_a_successful_login_forgets_the_failures(client, alice):
    for _ in range(4):
        attempt(client)
    attempt(client, password=PASSWORD)
    other = Client()
    for _ in range(4):
        assert attempt(other).status_code == 200
    assert attempt(other, password=PASSWORD).status_code == 302


def test_the_lock_is_per_username(client, alice, bob):
    fail_five_times(client, "alice")
    assert attempt(client, "bob", password=PASSWORD).status_code == 302


def test_the_lock_is_per_address(client, alice):
    fail_five_times(client, REMOTE_ADDR="198.51.100.7")
    assert attempt(client, REMOTE_ADDR="198.51.100.7").status_code == 429
    assert attempt(client, password=PASSWORD, REMOTE_ADDR="198.51.100.8").status_code == 302


def test_usernames_are_counted_case_and_space_insensitively(client, alice):
    for username in ("alice", "Alice", " ALICE", "alice ", "aLiCe"):
        attempt(client, username)
    assert attempt(client, "alice", password=PASSWORD).status_code == 429


def test_the_lock_ends_when_the_oldest_failure_is_fifteen_minutes_old(client, alice):
    fail_five_times(client)
    oldest = LoginAttempt.objects.order_by("attempted_at").first()
    LoginAttempt.objects.filter(pk=oldest.pk).update(
        attempted_at=oldest.attempted_at - login_throttle.WINDOW - timedelta(seconds=1)
    )
    response = attempt(client, password=PASSWORD)
    assert response.status_code == 302


def test_old_attempts_are_pruned(client, alice):
    fail_five_times(client)
    LoginAttempt.objects.update(attempted_at=timezone.now() - timedelta(hours=1))
    attempt(client, "bob")
    assert list(LoginAttempt.objects.values_list("username", flat=True)) == ["bob"]


def test_the_lockout_is_logged(client, alice, caplog):
    fail_five_times(client)
    with caplog.at_level("WARNING", logger="vero_admin.login_throttle"):
        attempt(client)
    assert "Login refused for 'alice' from 127.0.0.1" in caplog.text


def test_the_admin_login_is_throttled_too(client, admin_user):
    for _ in range(login_throttle.FAILURE_LIMIT):
        response = client.post("/admin/login/", {"username": "root", "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_a_locked_out_user_can_still_see_the_login_page(client, alice):
    fail_five_times(client)
    assert client.get(LOGIN).status_code == 200


def test_the_admin_login_answers_429_with_retry_after_when_throttled(client, admin_user):
    for _ in range(login_throttle.FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 429
    assert 890 <= int(response["Retry-After"]) <= 900
    assert client.get("/admin/login/").status_code == 200


def test_one_address_trying_many_usernames_is_stopped(client, alice):
    for number in range(login_throttle.ADDRESS_FAILURE_LIMIT):
        assert attempt(client, f"user{number}").status_code == 200
    response = attempt(client, "alice", password=PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed login attempts from your address." in response.content
    assert 890 <= int(response["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session


def test_the_address_limit_stops_only_that_address(client, alice):
    for number in range(login_throttle.ADDRESS_FAILURE_LIMIT):
        attempt(client, f"user{number}", REMOTE_ADDR="203.0.113.9")
    assert attempt(client, "user99", REMOTE_ADDR="203.0.113.9").status_code == 429
    assert attempt(client, password=PASSWORD, REMOTE_ADDR="198.51.100.2").status_code == 302


PROXY = "10.0.0.1"  # the proxy's own address: REMOTE_ADDR of every request


def test_without_a_trusted_proxy_the_forwarded_header_is_ignored(client, alice):
    fail_five_times(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9")
    other = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "198.51.100.2"}
    assert attempt(client, password=PASSWORD, **other).status_code == 429


def test_behind_a_trusted_proxy_an_attacker_locks_out_only_their_own_address(
    client, alice, settings
):
    settings.VERO_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    fail_five_times(client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9")
    attacker = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert attempt(client, password=PASSWORD, **attacker).status_code == 429
    alice_at_home = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "198.51.100.2"}
    assert attempt(Client(), password=PASSWORD, **alice_at_home).status_code == 302
    assert set(LoginAttempt.objects.values_list("ip_address", flat=True)) <= {"203.0.113.9"}


def test_an_attacker_cannot_escape_the_limit_by_forging_the_header(client, alice, settings):
    """The proxy appends the address it saw; what the client sent stays on
    the left and is not read."""
    settings.VERO_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    for number in range(login_throttle.FAILURE_LIMIT):
        forged = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"192.0.2.{number}, 203.0.113.9"}
        assert attempt(client, **forged).status_code == 200
    forged = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "192.0.2.77, 203.0.113.9"}
    assert attempt(client, password=PASSWORD, **forged).status_code == 429


def test_two_trusted_hops_read_the_second_entry_from_the_right(rf, settings):
    settings.VERO_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.VERO_TRUSTED_PROXY_HOPS = 2
    request = rf.get(
        "/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.9, 10.0.0.2"
    )
    assert login_throttle.client_address(request) == "203.0.113.9"


@pytest.mark.parametrize("header", ["", "not an address", "203.0.113.9, bogus"])
def test_a_missing_or_malformed_proxy_header_falls_back_to_the_peer(rf, settings, header):
    settings.VERO_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    request = rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=header)
    assert login_throttle.client_address(request) == PROXY


def test_another_header_name_can_be_trusted(rf, settings):
    settings.VERO_TRUSTED_PROXY_HEADER = "X-Real-IP"
    request = rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_REAL_IP="2001:db8::1")
    assert login_throttle.client_address(request) == "2001:db8::1"
