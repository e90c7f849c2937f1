import base64
import gc
import gzip
import json
import threading
import time

import pytest

from profiles.api import MAX_BODY_BYTES
from profiles.models import Event, Profile, SeenMessage, SubscriptionPreference
from profiles.services import api_key_create, api_key_revoke
from tests.messaging.factories import MessageActivityFactory
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    _, raw_key = api_key_create(name="Website", scope="full")
    return raw_key


@pytest.fixture
def api(client, key):
    """Sends JSON with the key in the body, the way Vero's clients do."""

    def send(method, path, body=None, *, with_key=True, raw=None, **extra):
        if raw is None:
            payload = dict(body or {})
            if with_key:
                payload["tracking_api_key"] = key
            raw = json.dumps(payload)
        return getattr(client, method)(path, raw, content_type="application/json", **extra)

    return send


def basic_auth(raw_key):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{raw_key}:".encode()).decode()}


def nothing_written():
    return not Profile.objects.exists() and not Event.objects.exists()


# --- heartbeat and authentication ----------------------------------------------


def test_the_heartbeat_answers_without_a_key(client):
    response = client.get("/api/v2/heartbeat")
    assert response.status_code == 200
    assert response.json() == {"status": 200, "message": "Success."}


def test_the_heartbeat_answers_head_as_it_answers_get(client):
    response = client.head("/api/v2/heartbeat")
    assert response.status_code == 200
    assert response.content == b""


def test_the_heartbeat_refuses_post(client):
    response = client.post("/api/v2/heartbeat")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["code"] == "method_not_allowed"


def test_a_request_without_a_key_gets_401(api):
    response = api("post", "/api/v2/users/track", {"id": "u1"}, with_key=False)
    assert response.status_code == 401
    assert "No API key" in response.json()["message"]
    assert nothing_written()


def test_a_request_with_a_wrong_key_gets_401(api):
    body = {"id": "u1", "tracking_api_key": "not-a-key"}
    response = api("post", "/api/v2/users/track", body, with_key=False)
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or revoked API key."
    assert nothing_written()


def test_a_revoked_key_gets_401(api):
    api_key, raw_key = api_key_create(name="Old", scope="full")
    api_key_revoke(api_key=api_key)
    body = {"id": "u1", "tracking_api_key": raw_key}
    assert api("post", "/api/v2/users/track", body, with_key=False).status_code == 401
    assert nothing_written()


def test_the_older_auth_token_in_the_query_is_accepted(client, key):
    response = client.post(
        f"/api/v2/users/track?auth_token={key}", {"id": "u1"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert Profile.objects.filter(user_id="u1").exists()


def test_an_unknown_api_path_is_a_json_404(api):
    response = api("post", "/api/v2/users/nope", {"id": "u1"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# --- bad bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('"text"', "must be a JSON object, not a string"),
        ('{"id": NaN}', "not valid JSON"),
        ('{"id": "a\\u0000b"}', "NUL"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_a_json_object_gets_400(client, key, raw, message):
    response = client.post(
        f"/api/v2/users/track?tracking_api_key={key}", raw, content_type="application/json"
    )
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert nothing_written()


def test_invalid_utf8_gets_400(client, key):
    response = client.post(
        f"/api/v2/users/track?tracking_api_key={key}", b'{"id": "\xff"}', content_type="x"
    )
    assert response.status_code == 400
    assert nothing_written()


def test_a_body_over_the_size_limit_gets_413(api):
    body = {"id": "u1", "data": {"blob": "x" * MAX_BODY_BYTES}}
    response = api("post", "/api/v2/users/track", body)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert nothing_written()


def test_a_gzip_bomb_gets_413(client, key):
    body = json.dumps({"id": "u1", "data": {"blob": "x" * (MAX_BODY_BYTES * 4)}})
    response = client.post(
        f"/api/v2/users/track?tracking_api_key={key}",
        gzip.compress(body.encode()),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert nothing_written()


def test_a_gzipped_body_is_accepted(client, key):
    body = json.dumps({"id": "u1", "tracking_api_key": key})
    response = client.post(
        "/api/v2/users/track",
        gzip.compress(body.encode()),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert Profile.objects.filter(user_id="u1").exists()


# --- POST /api/v2/users/track ------------------------------------------------------


def test_identify_creates_a_subscribed_profile(api):
    body = {"id": 42, "email": "Ada@Example.com", "data": {"plan": "pro"}}
    response = api("post", "/api/v2/users/track", body)
    assert response.status_code == 200
    assert response.json() == {"status": 200, "message": "Success."}
    profile = Profile.objects.get()
    assert profile.user_id == "42"
    assert profile.email == "ada@example.com"
    assert profile.properties == {"plan": "pro"}
    assert profile.subscribed is True
    assert profile.tags == []


def test_identify_merges_data_into_an_existing_profile(api):
    profile = ProfileFactory(user_id="u1", email="old@example.com", properties={"a": 1, "b": 2})
    response = api(
        "post", "/api/v2/users/track", {"id": "u1", "email": "new@example.com", "data": {"b": 3}}
    )
    assert response.status_code == 200
    profile.refresh_from_db()
    assert profile.properties == {"a": 1, "b": 3}
    assert profile.email == "new@example.com"
    assert Profile.objects.count() == 1


def test_identify_by_email_alone_finds_the_profile_with_that_email(api):
    profile = ProfileFactory(user_id=None, email="ada@example.com", properties={})
    response = api("post", "/api/v2/users/track", {"email": "ada@example.com", "data": {"x": 1}})
    assert response.status_code == 200
    profile.refresh_from_db()
    assert profile.properties == {"x": 1}
    assert Profile.objects.count() == 1


def test_identify_by_email_alone_creates_a_profile_without_an_id(api):
    assert api("post", "/api/v2/users/track", {"email": "bea@example.com"}).status_code == 200
    profile = Profile.objects.get()
    assert (profile.user_id, profile.email, profile.properties) == (None, "bea@example.com", {})


def test_identify_keeps_the_email_when_none_is_given(api):
    profile = ProfileFactory(user_id="u1", email="ada@example.com")
    assert api("post", "/api/v2/users/track", {"id": "u1", "data": {"x": 1}}).status_code == 200
    profile.refresh_from_db()
    assert profile.email == "ada@example.com"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'Give "id" or "email"'),
        ({"data": {"a": 1}}, 'Give "id" or "email"'),
        ({"id": "u1", "data": [1]}, '"data" must be an object, not an array'),
        ({"id": "u1", "data": "x"}, '"data" must be an object, not a string'),
        ({"id": "u1", "emial": "a@example.com"}, 'unknown key(s) "emial"'),
        ({"id": ""}, '"id" must not be empty'),
        ({"id": True}, '"id" must be a string or an integer'),
        ({"id": "x" * 256}, "at most 255"),
        ({"email": "not-an-address"}, "not a valid email address"),
        ({"email": 7}, '"email" must be a string'),
    ],
)
def test_identify_refuses_bad_input_and_writes_nothing(api, body, message):
    response = api("post", "/api/v2/users/track", body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert message in response.json()["message"]
    assert nothing_written()


def test_identify_refuses_put(api):
    response = api("put", "/api/v2/users/track", {"id": "u1"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert nothing_written()


# --- PUT /api/v2/users/edit ----------------------------------------------------------


def test_edit_merges_changes(api):
    profile = ProfileFactory(user_id="u1", properties={"a": 1})
    assert api("put", "/api/v2/users/edit", {"id": "u1", "changes": {"b": 2}}).status_code == 200
    profile.refresh_from_db()
    assert profile.properties == {"a": 1, "b": 2}


def test_edit_finds_a_profile_by_email(api):
    profile = ProfileFactory(email="ada@example.com", properties={})
    body = {"email": "ADA@example.com", "changes": {"b": 2}}
    assert api("put", "/api/v2/users/edit", body).status_code == 200
    profile.refresh_from_db()
    assert profile.properties == {"b": 2}


def test_edit_of_an_unknown_profile_is_a_404_and_creates_nothing(api):
    response = api("put", "/api/v2/users/edit", {"id": "ghost", "changes": {"b": 2}})
    assert response.status_code == 404
    assert "ghost" in response.json()["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "u1"}, '"changes" is required'),
        ({"id": "u1", "changes": [1]}, '"changes" must be an object'),
        ({"changes": {"a": 1}}, 'Give "id" or "email"'),
        ({"id": "u1", "changes": {}, "data": {}}, 'unknown key(s) "data"'),
    ],
)
def test_edit_refuses_bad_input(api, body, message):
    profile = ProfileFactory(user_id="u1", properties={"a": 1})
    response = api("put", "/api/v2/users/edit", body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    profile.refresh_from_db()
    assert profile.properties == {"a": 1}


def test_edit_refuses_post(api):
    assert api("post", "/api/v2/users/edit", {"id": "u1", "changes": {}}).status_code == 405


# --- PUT /api/v2/users/tags/edit --------------------------------------------------------


def test_tags_are_added_and_removed(api):
    profile = ProfileFactory(user_id="u1", tags=["a", "b"])
    body = {"id": "u1", "add": ["c", "a"], "remove": ["b"]}
    assert api("put", "/api/v2/users/tags/edit", body).status_code == 200
    profile.refresh_from_db()
    assert profile.tags == ["a", "c"]


def test_tags_can_be_only_removed(api):
    profile = ProfileFactory(user_id="u1", tags=["a", "b"])
    assert api("put", "/api/v2/users/tags/edit", {"id": "u1", "remove": ["a"]}).status_code == 200
    profile.refresh_from_db()
    assert profile.tags == ["b"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "u1"}, 'Give "add" and/or "remove"'),
        ({"id": "u1", "add": "c"}, '"add" must be an array'),
        ({"id": "u1", "add": [""]}, '"add[0]" must be a non-empty string'),
        ({"id": "u1", "add": [1]}, '"add[0]" must be a non-empty string'),
        ({"id": "u1", "add": ["x" * 101]}, "at most 100"),
        ({"id": "u1", "add": ["c"], "remove": ["c"]}, "both added and removed"),
    ],
)
def test_tags_edit_refuses_bad_input(api, body, message):
    profile = ProfileFactory(user_id="u1", tags=["a"])
    response = api("put", "/api/v2/users/tags/edit", body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    profile.refresh_from_db()
    assert profile.tags == ["a"]


def test_tags_edit_of_an_unknown_profile_is_a_404(api):
    assert api("put", "/api/v2/users/tags/edit", {"id": "u1", "add": ["a"]}).status_code == 404
    assert nothing_written()


# --- PUT /api/v2/users/reidentify ----------------------------------------------------------


def test_reidentify_changes_the_id(api):
    profile = ProfileFactory(user_id="u1")
    assert api("put", "/api/v2/users/reidentify", {"id": "u1", "new_id": "u2"}).status_code == 200
    profile.refresh_from_db()
    assert profile.user_id == "u2"


def test_reidentify_to_an_id_in_use_is_a_409(api):
    first, second = ProfileFactory(user_id="u1"), ProfileFactory(user_id="u2")
    response = api("put", "/api/v2/users/reidentify", {"id": "u1", "new_id": "u2"})
    assert response.status_code == 409
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.user_id, second.user_id) == ("u1", "u2")


def test_reidentify_of_an_unknown_id_is_a_404(api):
    response = api("put", "/api/v2/users/reidentify", {"id": "u1", "new_id": "u2"})
    assert response.status_code == 404
    assert nothing_written()


@pytest.mark.parametrize(
    "body",
    [{"id": "u1"}, {"new_id": "u2"}, {"id": "u1", "new_id": ""}, {"id": "u1", "new_id": [1]}],
)
def test_reidentify_refuses_bad_input(api, body):
    profile = ProfileFactory(user_id="u1")
    assert api("put", "/api/v2/users/reidentify", body).status_code == 400
    profile.refresh_from_db()
    assert profile.user_id == "u1"


# --- POST /api/v2/users/unsubscribe and resubscribe ------------------------------------------


def test_unsubscribe_and_resubscribe(api):
    profile = ProfileFactory(user_id="u1")
    assert api("post", "/api/v2/users/unsubscribe", {"id": "u1"}).status_code == 200
    profile.refresh_from_db()
    assert profile.subscribed is False
    assert profile.unsubscribed_at is not None

    assert api("post", "/api/v2/users/resubscribe", {"id": "u1"}).status_code == 200
    profile.refresh_from_db()
    assert profile.subscribed is True
    assert profile.unsubscribed_at is None


def test_unsubscribing_twice_keeps_the_first_date(api):
    profile = ProfileFactory(user_id="u1")
    api("post", "/api/v2/users/unsubscribe", {"id": "u1"})
    profile.refresh_from_db()
    first = profile.unsubscribed_at
    api("post", "/api/v2/users/unsubscribe", {"id": "u1"})
    profile.refresh_from_db()
    assert profile.unsubscribed_at == first


def test_unsubscribe_by_email(api):
    profile = ProfileFactory(email="ada@example.com")
    assert api("post", "/api/v2/users/unsubscribe", {"email": "ada@example.com"}).status_code == 200
    profile.refresh_from_db()
    assert profile.subscribed is False


@pytest.mark.parametrize("path", ["/api/v2/users/unsubscribe", "/api/v2/users/resubscribe"])
def test_subscription_changes_refuse_bad_input_and_unknown_profiles(api, path):
    profile = ProfileFactory(user_id="u1", subscribed=True)
    assert api("post", path, {}).status_code == 400
    assert api("post", path, {"id": "u1", "topic": "news"}).status_code == 400
    assert api("post", path, {"id": "ghost"}).status_code == 404
    assert api("put", path, {"id": "u1"}).status_code == 405
    profile.refresh_from_db()
    assert profile.subscribed is True
    assert Profile.objects.count() == 1


# --- POST/DELETE /api/v2/users/delete -------------------------------------------------------


def test_delete_erases_the_profile_and_anonymizes_its_message_activity(api):
    profile = ProfileFactory(user_id="u1")
    EventFactory(profile=profile)
    SubscriptionPreferenceFactory(profile=profile)
    activity = MessageActivityFactory(profile=profile, message__profile=profile)
    keep = EventFactory()

    assert api("post", "/api/v2/users/delete", {"id": "u1"}).status_code == 200

    assert not Profile.objects.filter(pk=profile.pk).exists()
    assert list(Event.objects.all()) == [keep]
    assert not SubscriptionPreference.objects.exists()
    activity.refresh_from_db()
    assert activity.profile_id is None
    assert activity.ip_address is None
    activity.message.refresh_from_db()
    assert activity.message.profile_id is None
    assert activity.message.recipient_email == ""


def test_delete_accepts_the_delete_method_with_the_id_in_the_query(client, key):
    ProfileFactory(user_id="u1")
    response = client.delete(f"/api/v2/users/delete?id=u1&tracking_api_key={key}")
    assert response.status_code == 200
    assert not Profile.objects.exists()


def test_delete_of_an_unknown_id_is_a_404(api):
    keep = ProfileFactory(user_id="u2")
    response = api("post", "/api/v2/users/delete", {"id": "u1"})
    assert response.status_code == 404
    assert list(Profile.objects.all()) == [keep]


@pytest.mark.parametrize("body", [{}, {"email": "a@example.com"}, {"id": ""}])
def test_delete_refuses_bad_input(api, body):
    ProfileFactory(user_id="u1", email="a@example.com")
    assert api("post", "/api/v2/users/delete", body).status_code == 400
    assert Profile.objects.count() == 1


def test_delete_refuses_get(api, key, client):
    ProfileFactory(user_id="u1")
    assert client.get(f"/api/v2/users/delete?id=u1&tracking_api_key={key}").status_code == 405
    assert Profile.objects.count() == 1


# --- re-identification after an API delete ----------------------------------------------------


def test_identify_after_delete_creates_a_brand_new_subscribed_profile(api):
    old = ProfileFactory(
        user_id="u1", email="ada@example.com", properties={"plan": "pro"}, tags=["vip"]
    )
    old.subscribed = False
    old.save()
    EventFactory(profile=old)
    SubscriptionPreferenceFactory(profile=old, subscribed=False)
    activity = MessageActivityFactory(profile=old, message__profile=old)
    api("post", "/api/v2/users/delete", {"id": "u1"})

    response = api("post", "/api/v2/users/track", {"id": "u1", "email": "ada@example.com"})
    assert response.status_code == 200

    new = Profile.objects.get(user_id="u1")
    assert new.pk != old.pk
    assert new.subscribed is True
    assert new.unsubscribed_at is None
    assert new.properties == {}
    assert new.tags == []
    assert not new.events.exists()
    assert not new.preferences.exists()
    assert not new.memberships.exists()
    activity.refresh_from_db()
    assert activity.profile_id is None
    assert not new.message_activity.exists()
    assert not new.messages.exists()


def test_an_event_after_delete_creates_a_brand_new_profile(api):
    old = ProfileFactory(user_id="u1", properties={"plan": "pro"})
    EventFactory(profile=old, name="old")
    api("post", "/api/v2/users/delete", {"id": "u1"})

    body = {"identity": {"id": "u1"}, "event_name": "signed_in"}
    assert api("post", "/api/v2/events/track", body).status_code == 200

    new = Profile.objects.get(user_id="u1")
    assert new.pk != old.pk
    assert new.subscribed is True
    assert new.properties == {}
    assert list(new.events.values_list("name", flat=True)) == ["signed_in"]


def test_identify_by_email_after_delete_creates_a_new_profile(api):
    old = ProfileFactory(user_id=None, email="ada@example.com", properties={"a": 1})
    old_pk = old.pk
    Profile.objects.filter(pk=old_pk).update(user_id="u1")
    api("post", "/api/v2/users/delete", {"id": "u1"})

    assert api("post", "/api/v2/users/track", {"email": "ada@example.com"}).status_code == 200
    new = Profile.objects.get(email="ada@example.com")
    assert new.pk != old_pk
    assert (new.user_id, new.properties, new.subscribed) == (None, {}, True)


# --- POST /api/v2/events/track -----------------------------------------------------------


def test_an_event_is_recorded_for_an_existing_profile(api):
    profile = ProfileFactory(user_id="u1", email="ada@example.com", properties={"a": 1})
    body = {
        "identity": {"id": "u1", "email": "other@example.com"},
        "event_name": "Viewed product",
        "data": {"sku": "T-1"},
        "extras": {"created_at": "2023-05-30T04:46:31+0000", "source": "web"},
    }
    assert api("post", "/api/v2/events/track", body).status_code == 200
    event = Event.objects.get()
    assert event.profile_id == profile.pk
    assert event.name == "Viewed product"
    assert event.properties == {"sku": "T-1"}
    assert event.occurred_at.isoformat() == "2023-05-30T04:46:31+00:00"
    profile.refresh_from_db()
    assert profile.email == "ada@example.com"  # events do not edit the profile
    assert profile.properties == {"a": 1}


def test_an_event_for_an_unknown_identity_creates_a_subscribed_profile(api):
    body = {"identity": {"email": "Bea@example.com"}, "event_name": "signed_up"}
    assert api("post", "/api/v2/events/track", body).status_code == 200
    profile = Profile.objects.get()
    assert (profile.user_id, profile.email, profile.subscribed) == (None, "bea@example.com", True)
    assert profile.events.get().name == "signed_up"


def test_an_event_accepts_a_unix_created_at(api):
    ProfileFactory(user_id="u1")
    body = {"identity": {"id": "u1"}, "event_name": "x", "extras": {"created_at": 0}}
    assert api("post", "/api/v2/events/track", body).status_code == 200
    assert Event.objects.get().occurred_at.year == 1970


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event_name": "x"}, '"identity" is required'),
        ({"identity": {}, "event_name": "x"}, 'Give "identity.id" or "identity.email"'),
        ({"identity": "u1", "event_name": "x"}, '"identity" must be an object'),
        ({"identity": {"id": "u1"}}, '"event_name" is required'),
        ({"identity": {"id": "u1"}, "event_name": " "}, '"event_name" is required'),
        ({"identity": {"id": "u1"}, "event_name": "x" * 256}, "at most 255"),
        ({"identity": {"id": "u1"}, "event_name": "x", "data": 3}, '"data" must be an object'),
        ({"identity": {"id": "u1", "name": "A"}, "event_name": "x"}, 'unknown key(s) "name"'),
        ({"identity": {"id": "u1"}, "event_name": "x", "when": 1}, 'unknown key(s) "when"'),
        (
            {"identity": {"id": "u1"}, "event_name": "x", "extras": {"created_at": "soon"}},
            "ISO 8601",
        ),
        (
            {"identity": {"id": "u1"}, "event_name": "x", "extras": {"ip": "1.2.3.4"}},
            'unknown key(s) "ip"',
        ),
    ],
)
def test_an_event_with_bad_input_is_refused_and_writes_nothing(api, body, message):
    response = api("post", "/api/v2/events/track", body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert nothing_written()


def test_events_track_refuses_get(client, key):
    response = client.get("/api/v2/events/track", {"tracking_api_key": key})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


# --- Segment: /v1/batch, /v1/identify, /v1/track -----------------------------------------------


def segment_identify(user_id, **traits):
    return {"type": "identify", "userId": user_id, "traits": traits}


def segment_track(user_id, event, **properties):
    return {"type": "track", "userId": user_id, "event": event, "properties": properties}


def test_a_segment_batch_applies_identify_and_track_in_order(client, key):
    batch = [
        segment_identify("u1", email="ada@example.com", plan="pro"),
        {**segment_track("u1", "Signed In", source="web"), "timestamp": "2024-01-02T03:04:05Z"},
        segment_track("u2", "Viewed"),
        {"type": "page", "userId": "u1", "name": "Home"},
    ]
    response = client.post(
        "/v1/batch", {"batch": batch}, content_type="application/json", **basic_auth(key)
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "applied": 3,
        "duplicates": 0,
        "ignored": 1,
        "suppressed": 0,
    }
    ada = Profile.objects.get(user_id="u1")
    assert (ada.email, ada.properties, ada.subscribed) == ("ada@example.com", {"plan": "pro"}, True)
    event = ada.events.get()
    assert (event.name, event.properties) == ("Signed In", {"source": "web"})
    assert event.occurred_at.isoformat() == "2024-01-02T03:04:05+00:00"
    assert Profile.objects.get(user_id="u2").events.get().name == "Viewed"


def test_a_segment_batch_is_atomic_and_names_the_bad_item(client, key):
    batch = [segment_identify("u1"), segment_track("u1", "ok"), {"type": "track", "userId": "u1"}]
    response = client.post(
        "/v1/batch", {"batch": batch}, content_type="application/json", **basic_auth(key)
    )
    assert response.status_code == 400
    assert response.json()["item"] == 2
    assert response.json()["message"].startswith("batch[2]: ")
    assert '"event" is required' in response.json()["message"]
    assert nothing_written()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ("x", '"batch" is required and must be an array'),
        ([], '"batch" is empty'),
        ([1], "batch[0]: a message must be an object"),
        ([{"type": "track", "event": "x"}], 'or "anonymousId" for an anonymous visitor'),
        ([{"type": "explode", "userId": "u1"}], '"type" must be one of'),
        ([{"type": "identify", "userId": "u1", "traits": []}], '"traits" must be an object'),
        ([{"type": "identify", "userId": "u1", "trait": {}}], 'unknown key(s) "trait"'),
        ([{"type": "identify", "userId": "u1", "timestamp": "x"}], '"timestamp" must be'),
        ([{"type": "identify", "userId": "u1", "traits": {"email": "x"}}], "not a valid email"),
        ([segment_identify("u1")] * 501, "at most 500"),
    ],
)
def test_a_bad_segment_batch_is_refused_and_writes_nothing(client, key, batch, message):
    response = client.post(
        "/v1/batch", {"batch": batch}, content_type="application/json", **basic_auth(key)
    )
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert nothing_written()
    assert not SeenMessage.objects.exists()


def test_a_segment_batch_with_an_unknown_top_level_key_is_refused(client, key):
    body = {"batch": [segment_identify("u1")], "bacth": []}
    response = client.post("/v1/batch", body, content_type="application/json", **basic_auth(key))
    assert response.status_code == 400
    assert 'unknown key(s) "bacth"' in response.json()["message"]


def test_a_segment_message_id_seen_before_is_not_applied_twice(client, key):
    message = {**segment_track("u1", "Paid", amount=10), "messageId": "m-1"}
    body = {"batch": [message, {**message}]}
    first = client.post("/v1/batch", body, content_type="application/json", **basic_auth(key))
    assert first.json() == {
        "success": True,
        "applied": 1,
        "duplicates": 1,
        "ignored": 0,
        "suppressed": 0,
    }
    again = client.post("/v1/batch", body, content_type="application/json", **basic_auth(key))
    assert again.json() == {
        "success": True,
        "applied": 0,
        "duplicates": 2,
        "ignored": 0,
        "suppressed": 0,
    }
    assert Event.objects.count() == 1
    assert SeenMessage.objects.count() == 1


def test_a_refused_segment_batch_does_not_mark_its_message_ids_seen(client, key):
    good = {**segment_track("u1", "Paid"), "messageId": "m-1"}
    bad = {"batch": [good, {"type": "track", "userId": "u1", "messageId": "m-2"}]}
    client.post("/v1/batch", bad, content_type="application/json", **basic_auth(key))
    retry = client.post(
        "/v1/batch", {"batch": [good]}, content_type="application/json", **basic_auth(key)
    )
    assert retry.json()["applied"] == 1
    assert Event.objects.count() == 1


def test_segment_identify_and_track_endpoints(client, key):
    identify = {"userId": "u1", "traits": {"email": "ada@example.com", "name": "Ada"}}
    response = client.post(
        "/v1/identify", identify, content_type="application/json", **basic_auth(key)
    )
    assert response.status_code == 200
    track = {"userId": "u1", "event": "Clicked", "properties": {"n": 1}, "writeKey": key}
    assert client.post("/v1/track", track, content_type="application/json").status_code == 200
    profile = Profile.objects.get()
    assert (profile.email, profile.properties) == ("ada@example.com", {"name": "Ada"})
    assert profile.events.get().properties == {"n": 1}


def test_segment_track_refuses_an_identify_message(client, key):
    body = {"type": "identify", "userId": "u1"}
    response = client.post("/v1/track", body, content_type="application/json", **basic_auth(key))
    assert response.status_code == 400
    assert nothing_written()


def test_segment_track_takes_the_email_from_the_context(client, key):
    body = {"userId": "u1", "event": "x", "context": {"traits": {"email": "ada@example.com"}}}
    response = client.post("/v1/track", body, content_type="application/json", **basic_auth(key))
    assert response.status_code == 200
    assert Profile.objects.get().email == "ada@example.com"


def test_segment_endpoints_need_a_key_and_post(client, key):
    body = {"batch": [segment_identify("u1")]}
    assert client.post("/v1/batch", body, content_type="application/json").status_code == 401
    wrong = client.post("/v1/batch", body, content_type="application/json", **basic_auth("no"))
    assert wrong.status_code == 401
    assert client.get("/v1/batch", **basic_auth(key)).status_code == 405
    assert nothing_written()


# --- the official Segment client against a live server ---------------------------------------


@pytest.fixture
def segment_analytics(live_server, monkeypatch):
    import requests
    import segment.analytics as analytics
    from segment.analytics import request

    session = requests.Session()
    monkeypatch.setattr(request, "_session", session)
    _, raw_key = api_key_create(name="Segment source", scope="full")
    errors = []
    for name, value in {
        "write_key": raw_key,
        "host": live_server.url,
        "sync_mode": True,
        "gzip": False,
        "max_retries": 0,
        "on_error": lambda error, items: errors.append(error),
        "default_client": None,
    }.items():
        monkeypatch.setattr(analytics, name, value)
    yield analytics, errors
    if analytics.default_client and not analytics.default_client.sync_mode:
        analytics.shutdown()
    analytics.default_client = None
    _close_kept_alive_connections(session)


def _close_kept_alive_connections(session):
    """Close the client's connections, so that the live server's request
    threads end and close their database connections; otherwise the test
    database cannot be dropped at the end of the run."""
    session.close()
    gc.collect()  # a refused response lives in a reference cycle with its traceback
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        "process_request_thread" in thread.name for thread in threading.enumerate()
    ):
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_the_official_segment_client_delivers_profiles_and_events(segment_analytics):
    analytics, errors = segment_analytics
    analytics.identify("u-1", {"email": "ada@example.com", "plan": "pro"})
    analytics.track("u-1", "Order Completed", {"total": 42.5})
    analytics.track("u-2", "Signed Up", message_id="fixed-id")
    analytics.track("u-2", "Signed Up", message_id="fixed-id")  # a client retry
    analytics.page("u-1", "Docs", "Home")  # accepted, not stored

    assert errors == []
    ada = Profile.objects.get(user_id="u-1")
    assert (ada.email, ada.properties, ada.subscribed) == ("ada@example.com", {"plan": "pro"}, True)
    assert list(ada.events.values_list("name", "properties")) == [
        ("Order Completed", {"total": 42.5})
    ]
    assert Profile.objects.get(user_id="u-2").events.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_official_segment_client_can_send_gzip_and_batches(segment_analytics):
    analytics, errors = segment_analytics
    analytics.gzip = True
    analytics.sync_mode = False
    analytics.default_client = None
    for n in range(30):
        analytics.track(f"u-{n % 3}", "Viewed", {"n": n})
    analytics.flush()

    assert errors == []
    assert Profile.objects.count() == 3
    assert Event.objects.count() == 30


@pytest.mark.django_db(transaction=True)
def test_the_official_segment_client_sees_a_refusal(segment_analytics):
    from segment.analytics.request import APIError

    analytics, _ = segment_analytics
    analytics.write_key = "revoked-or-wrong"
    analytics.default_client = None
    with pytest.raises(APIError) as refused:
        analytics.track("u-1", "Viewed")
    assert refused.value.status == 401
    assert refused.value.code == "unauthorized"
    assert not Event.objects.exists()
