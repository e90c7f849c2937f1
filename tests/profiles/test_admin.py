import threading

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.test import Client

from profiles.erasure import erased_repr
from profiles.models import ApiKey, Profile, SubscriptionPreference
from profiles.selectors import api_key_authenticate
from profiles.services import api_key_create
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory
from tests.profiles.test_ingestion import (
    WAIT_SECONDS,
    _erase_while_holding_the_lock,
    _Thread,
    _wait_until_someone_waits_for_a_lock,
)

pytestmark = pytest.mark.django_db


def test_creating_a_key_in_admin_shows_it_once_and_stores_its_hash(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/profiles/apikey/add/", {"name": "Website", "scope": "track"})
    assert response.status_code == 200
    raw_key = response.context["raw_key"]
    assert raw_key.encode() in response.content
    assert b"the key to embed in a website" in response.content
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.scope) == ("Website", "track")
    assert api_key.prefix == raw_key[:8]
    assert api_key.hashed_key == ApiKey.hash(raw_key)
    assert raw_key not in api_key.hashed_key
    assert api_key_authenticate(raw_key=raw_key) == api_key

    page = client.get(f"/admin/profiles/apikey/{api_key.pk}/change/")
    assert page.status_code == 200
    assert raw_key.encode() not in page.content


def test_the_key_admin_asks_for_the_scope_and_says_which_to_embed(client, admin_user):
    client.force_login(admin_user)
    form = client.get("/admin/profiles/apikey/add/")
    assert form.status_code == 200
    assert b'name="scope"' in form.content
    assert b"checked" not in form.content  # no scope chosen in advance
    assert b"The one to embed in a website or app" in form.content
    assert b"never in a browser" in form.content

    refused = client.post("/admin/profiles/apikey/add/", {"name": "Website"})
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {"scope": ["This field is required."]}
    assert not ApiKey.objects.exists()

    client.post("/admin/profiles/apikey/add/", {"name": "Server", "scope": "full"})
    api_key = ApiKey.objects.get()
    assert api_key.scope == "full"
    change = client.post(
        f"/admin/profiles/apikey/{api_key.pk}/change/", {"name": "Server", "scope": "track"}
    )
    assert change.status_code == 302
    api_key.refresh_from_db()
    assert api_key.scope == "full"  # chosen once, read-only afterwards


def test_a_key_is_revoked_with_the_admin_action(client, admin_user):
    client.force_login(admin_user)
    api_key, raw_key = api_key_create(name="Old", scope="full")
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


# --- Django admin and erasure --------------------------------------------------------


def test_deleting_a_profile_in_the_admin_writes_no_email_to_the_log_or_the_message(admin_client):
    profile = ProfileFactory(email="ada@example.com")
    url = f"/admin/profiles/profile/{profile.pk}/delete/"
    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    entry = LogEntry.objects.get(object_id=str(profile.pk))
    assert (entry.action_flag, entry.object_repr) == (DELETION, erased_repr(Profile))
    shown = [str(message) for message in response.context["messages"]]
    assert shown == [f"The profile “#{profile.pk}” was deleted successfully."]
    assert b"ada@example.com" not in response.content


def test_deleting_profiles_in_bulk_writes_no_email_to_the_log(admin_client):
    profiles = ProfileFactory.create_batch(2)
    admin_client.post(
        "/admin/profiles/profile/",
        {"action": "delete_selected", "_selected_action": [p.pk for p in profiles], "post": "yes"},
    )
    assert (
        sorted(LogEntry.objects.values_list("object_repr", flat=True)) == [erased_repr(Profile)] * 2
    )


def _change_data(profile, preference, **changes):
    return {
        "user_id": profile.user_id,
        "email": profile.email,
        "properties": '{"plan": "pro"}',
        "tags": "",
        "subscribed": "on",
        "unsubscribed_at_0": "",
        "unsubscribed_at_1": "",
        "preferences-TOTAL_FORMS": "1",
        "preferences-INITIAL_FORMS": "1",
        "preferences-MIN_NUM_FORMS": "0",
        "preferences-MAX_NUM_FORMS": "1000",
        "preferences-0-id": str(preference.pk),
        "preferences-0-profile": str(profile.pk),
        "preferences-0-topic": preference.topic,
        "preferences-0-subscribed": "on",
        "preferences-0-changed_at_0": "2025-01-02",
        "preferences-0-changed_at_1": "03:04:05",
        **changes,
    }


def test_a_profile_saved_in_the_admin_is_updated_in_place(admin_client):
    profile = ProfileFactory()
    preference = SubscriptionPreferenceFactory(profile=profile)
    url = f"/admin/profiles/profile/{profile.pk}/change/"
    response = admin_client.post(url, _change_data(profile, preference, email="new@example.com"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile.refresh_from_db()
    assert profile.email == "new@example.com"


@pytest.mark.django_db(transaction=True)
def test_an_admin_save_racing_an_erasure_is_refused_and_writes_nothing(admin_user):
    """The erasure holds the profile FOR UPDATE; the save waits for it. Saving
    blindly would update no row and INSERT the person again, old id, email,
    attributes and inline preference: half a person."""
    profile = ProfileFactory(email="ada@example.com", properties={"plan": "pro"})
    preference = SubscriptionPreferenceFactory(profile=profile)
    data = _change_data(profile, preference, email="ada@example.com")
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(profile.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)

    def save():
        client = Client()
        client.force_login(admin_user)
        return client.post(f"/admin/profiles/profile/{profile.pk}/change/", data, follow=True)

    saver = _Thread(save)
    saver.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    assert eraser.outcome().deleted == 1
    response = saver.outcome()
    assert response.redirect_chain[-1][0] == "/admin/"
    shown = [str(message) for message in response.context["messages"]]
    assert shown == [f"profile with ID “{profile.pk}” doesn’t exist. Perhaps it was deleted?"]  # noqa: RUF001
    assert not Profile.objects.exists()
    assert not SubscriptionPreference.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_admin_row_for_a_profile_being_erased_is_refused_with_a_form_error(admin_user):
    profile = ProfileFactory()
    locked, go = threading.Event(), threading.Event()
    eraser = _erase_while_holding_the_lock(profile.pk, locked, go)
    eraser.start()
    assert locked.wait(WAIT_SECONDS)
    data = {
        "profile": str(profile.pk),
        "topic": "newsletter",
        "subscribed": "on",
        "changed_at_0": "2025-01-02",
        "changed_at_1": "03:04:05",
    }

    def add():
        client = Client()
        client.force_login(admin_user)
        return client.post("/admin/profiles/subscriptionpreference/add/", data)

    adder = _Thread(add)
    adder.start()
    _wait_until_someone_waits_for_a_lock()
    go.set()

    eraser.outcome()
    response = adder.outcome()
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["profile"] == ["This profile no longer exists; it may have just been erased."]
    assert not SubscriptionPreference.objects.exists()


HOSTILE_JSON = [
    '{"score": 1e400}',
    '{"score": NaN}',
    '{"score": -Infinity}',
    '{"score": 1' + "0" * 5000 + "}",
    '{"a": "x\\u0000y"}',
    '{"a": "\\ud800"}',
    '{"\\u0000": 1}',
    "[" * 100_000,
]


@pytest.mark.parametrize("properties", HOSTILE_JSON)
def test_the_profile_admin_refuses_json_the_database_cannot_hold_with_a_form_error(
    admin_client, properties
):
    profile = ProfileFactory(email="ada@example.com", properties={"plan": "pro"})
    data = {
        "email": profile.email,
        "user_id": profile.user_id or "",
        "properties": properties,
        "preferences-TOTAL_FORMS": "0",
        "preferences-INITIAL_FORMS": "0",
    }
    response = admin_client.post(f"/admin/profiles/profile/{profile.pk}/change/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["properties"]
    profile.refresh_from_db()
    assert profile.properties == {"plan": "pro"}


@pytest.mark.parametrize("properties", HOSTILE_JSON[:3])
def test_the_event_admin_refuses_json_the_database_cannot_hold_with_a_form_error(
    admin_client, properties
):
    event = EventFactory(properties={"plan": "pro"})
    data = {
        "name": event.name,
        "profile": event.profile_id,
        "occurred_at_0": "2024-01-01",
        "occurred_at_1": "10:00:00",
        "properties": properties,
    }
    response = admin_client.post(f"/admin/profiles/event/{event.pk}/change/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["properties"]
    event.refresh_from_db()
    assert event.properties == {"plan": "pro"}
