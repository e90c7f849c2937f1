import pytest

from profiles.models import ApiKey, Profile
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


def test_deleting_a_profile_in_the_admin_erases_it_like_everywhere_else(admin_client):
    from messaging.models import Message, MessageActivity
    from tests.messaging.factories import MessageActivityFactory

    activity = MessageActivityFactory()
    profile = activity.profile
    url = f"/admin/profiles/profile/{profile.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Profile.objects.filter(pk=profile.pk).exists()
    message = Message.objects.get(pk=activity.message_id)
    assert message.profile_id is None and message.recipient_email == ""
    activity = MessageActivity.objects.get(pk=activity.pk)
    assert activity.ip_address is None and activity.user_agent == ""


def test_deleting_profiles_in_bulk_in_the_admin_erases_them(admin_client):
    from messaging.models import Message
    from tests.messaging.factories import MessageFactory

    messages = MessageFactory.create_batch(3)
    ids = [m.profile_id for m in messages]
    response = admin_client.post(
        "/admin/profiles/profile/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert not Profile.objects.filter(pk__in=ids).exists()
    assert not Message.objects.exclude(recipient_email="").exists()
