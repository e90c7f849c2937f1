import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

DASHBOARD_URLS = ["/segments/", "/profiles/", "/campaigns/"]


@pytest.mark.parametrize("url", DASHBOARD_URLS)
def test_anonymous_users_are_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_the_login_page_renders(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Log in to vero_admin" in response.content


def test_logging_in_leads_to_the_segments(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/segments/"


def test_a_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_logout_needs_post(editor_client):
    assert editor_client.get("/accounts/logout/").status_code == 405
    assert editor_client.post("/accounts/logout/").status_code == 302


def test_the_home_page_redirects_to_segments(editor_client):
    response = editor_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/segments/"


def test_htmx_is_served_from_our_own_static_files(editor_client):
    html = editor_client.get("/segments/").content.decode()
    assert 'src="/static/django_htmx/htmx' in html
    # Every script and stylesheet comes from our own origin. (Checking the
    # whole page for "cdn" failed once: a CSRF token can contain it.)
    urls = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', html)
    assert urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
