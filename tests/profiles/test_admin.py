import pytest

from profiles.models import ApiKey
from profiles.selectors import api_key_authenticate
from profiles.services import api_key_create

pytestmark = pytest.mark.django_db


def test_creating_a_key_in_admin_shows_it_once_and_stores_its_hash(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/profiles/apikey/add/", {"name": "Website"})
    assert response.status_code == 200
    raw_key = response.context["raw_key"]
    assert raw_key.encode() in response.content
    api_key = ApiKey.objects.get()
    assert api_key.name == "Website"
    assert api_key.prefix == raw_key[:8]
    assert api_key.hashed_key == ApiKey.hash(raw_key)
    assert raw_key not in api_key.hashed_key
    assert api_key_authenticate(raw_key=raw_key) == api_key

    page = client.get(f"/admin/profiles/apikey/{api_key.pk}/change/")
    assert page.status_code == 200
    assert raw_key.encode() not in page.content


def test_a_key_is_revoked_with_the_admin_action(client, admin_user):
    client.force_login(admin_user)
    api_key, raw_key = api_key_create(name="Old")
    response = client.post(
        "/admin/profiles/apikey/",
        {"action": "revoke", "_selected_action": [api_key.pk]},
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key_authenticate(raw_key=raw_key) is None


def test_the_key_admin_is_for_staff_only(editor_client):
    assert editor_client.get("/admin/profiles/apikey/add/").status_code == 302
