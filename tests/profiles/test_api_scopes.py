"""API key scopes: a key a website embeds may identify and track, nothing else;
calls that edit or delete people take a full key, from a server (issue 17)."""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from profiles.models import ApiKey, Event, Profile
from profiles.services import api_key_create
from tests.profiles.factories import ProfileFactory
from tests.profiles.test_api import basic_auth

pytestmark = pytest.mark.django_db

FULL_ONLY = [
    ("put", "/api/v2/users/edit", {"id": "u1", "changes": {"plan": "free"}}),
    ("put", "/api/v2/users/tags/edit", {"id": "u1", "add": ["x"]}),
    ("put", "/api/v2/users/reidentify", {"id": "u1", "new_id": "u2"}),
    ("post", "/api/v2/users/unsubscribe", {"id": "u1"}),
    ("post", "/api/v2/users/resubscribe", {"id": "u1"}),
    ("post", "/api/v2/users/delete", {"id": "u1"}),
    ("delete", "/api/v2/users/delete", {"id": "u1"}),
]
TRACKING = [
    ("/api/v2/users/track", {"id": "u1", "data": {"plan": "pro"}}),
    ("/api/v2/events/track", {"identity": {"id": "u1"}, "event_name": "Viewed"}),
    ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}),
    ("/v1/track", {"userId": "u1", "event": "Viewed"}),
    ("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": "Viewed"}]}),
]


@pytest.fixture
def track_key():
    return api_key_create(name="Website", scope="track")[1]


@pytest.fixture
def full_key():
    return api_key_create(name="Server", scope="full")[1]


@pytest.fixture
def ada():
    return ProfileFactory(user_id="u1", properties={"plan": "pro"}, tags=["vip"], subscribed=False)


def send(client, method, path, body, key, **headers):
    return getattr(client, method)(
        path, json.dumps(body), content_type="application/json", **basic_auth(key), **headers
    )


def unchanged(profile):
    now = Profile.objects.get(pk=profile.pk)
    return (now.user_id, now.properties, now.tags, now.subscribed) == (
        profile.user_id,
        profile.properties,
        profile.tags,
        profile.subscribed,
    )


@pytest.mark.parametrize(("method", "path", "body"), FULL_ONLY)
def test_a_track_only_key_gets_403_on_calls_that_change_or_remove_people(
    client, track_key, ada, method, path, body
):
    response = send(client, method, path, body, track_key)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "for tracking only" in response.json()["message"]
    assert path in response.json()["message"]
    assert unchanged(ada)


@pytest.mark.parametrize(("method", "path", "body"), FULL_ONLY)
def test_a_full_key_may_make_those_calls(client, full_key, ada, method, path, body):
    assert send(client, method, path, body, full_key).status_code == 200


@pytest.mark.parametrize(("path", "body"), TRACKING)
@pytest.mark.parametrize("scope", ["track", "full"])
def test_both_scopes_may_identify_and_track(client, path, body, scope):
    _, key = api_key_create(name="k", scope=scope)
    response = send(client, "post", path, body, key)
    assert response.status_code == 200, response.content
    assert Profile.objects.filter(user_id="u1").exists()


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver.evil"])
@pytest.mark.parametrize(("method", "path", "body"), FULL_ONLY)
def test_a_full_call_from_a_web_page_of_another_site_gets_403(
    client, full_key, ada, method, path, body, origin
):
    response = send(client, method, path, body, full_key, HTTP_ORIGIN=origin)
    assert response.status_code == 403
    assert "not accepted from a web page" in response.json()["message"]
    assert unchanged(ada)


def test_a_full_call_from_our_own_origin_is_accepted(client, full_key, ada):
    body = {"id": "u1", "changes": {"plan": "free"}}
    response = send(
        client, "put", "/api/v2/users/edit", body, full_key, HTTP_ORIGIN="http://testserver"
    )
    assert response.status_code == 200


def test_a_cross_origin_text_plain_delete_is_refused_even_with_the_key_in_the_body(
    client, full_key, ada
):
    """What a page elsewhere can send without a CORS preflight."""
    response = client.post(
        "/api/v2/users/delete",
        json.dumps({"id": "u1", "tracking_api_key": full_key}),
        content_type="text/plain",
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 403
    assert Profile.objects.filter(pk=ada.pk).exists()


def test_a_website_may_track_cross_origin_with_text_plain_like_analytics_js(client, track_key):
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Viewed"}], "writeKey": track_key}
    response = client.post(
        "/v1/batch", json.dumps(body), content_type="text/plain", HTTP_ORIGIN="https://shop.example"
    )
    assert response.status_code == 200
    assert Event.objects.get().name == "Viewed"


@pytest.mark.django_db(transaction=True)
def test_keys_made_before_scopes_existed_keep_full_access():
    executor = MigrationExecutor(connection)
    executor.migrate([("profiles", "0006_suppression")])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_apikey (name, prefix, hashed_key, created_at) "
            "VALUES ('Old', 'abcdefgh', %s, now())",
            [ApiKey.hash("old-key")],
        )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert ApiKey.objects.get(name="Old").scope == "full"
    assert ApiKey._meta.get_field("scope").default == "track"


def _analytics_js(call_type: str, key: str, **fields) -> str:
    """A message shaped as analytics.js (analytics-next 1.x, normalize.ts)
    sends it from a page: the key in the body, the visitor's anonymousId."""
    return json.dumps(
        {
            "type": call_type,
            "anonymousId": "6f3c8d2e-5b1a-4c9e-9a0d-1e2f3a4b5c6d",
            "context": {
                "page": {"path": "/", "url": "https://shop.example/", "search": ""},
                "userAgent": "Mozilla/5.0",
                "locale": "en-GB",
                "library": {"name": "analytics.js", "version": "next-1.84.3"},
            },
            "integrations": {},
            "messageId": f"ajs-next-{call_type}-1",
            "timestamp": "2026-01-02T03:04:05.678Z",
            "sentAt": "2026-01-02T03:04:05.690Z",
            "writeKey": key,
            "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("path", "call_type", "fields", "applied"),
    [
        ("/v1/p", "page", {"name": "Home", "properties": {"path": "/"}}, 0),
        ("/v1/t", "track", {"event": "Viewed", "properties": {"sku": "T-1"}}, 0),
        ("/v1/t", "track", {"event": "Viewed", "userId": "u1"}, 1),
        ("/v1/i", "identify", {"userId": "u1", "traits": {"email": "ada@example.com"}}, 1),
    ],
)
def test_analytics_js_on_a_website_tracks_with_a_track_key_on_its_short_paths(
    client, track_key, path, call_type, fields, applied
):
    response = client.post(
        path,
        _analytics_js(call_type, track_key, **fields),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.example",
    )
    assert response.status_code == 200, response.content
    assert response.json()["applied"] == applied
    assert response.json()["ignored"] == 1 - applied
    assert Profile.objects.filter(user_id="u1").exists() == bool(applied)


@pytest.mark.parametrize(
    ("path", "call_type"),
    [
        ("/v1/page", "page"),
        ("/v1/screen", "screen"),
        ("/v1/group", "group"),
        ("/v1/alias", "alias"),
        ("/v1/s", "screen"),
        ("/v1/g", "group"),
        ("/v1/a", "alias"),
    ],
)
def test_the_other_segment_calls_are_accepted_and_not_stored(client, track_key, path, call_type):
    message = {"type": call_type, "userId": "u1", "messageId": "m-1"}
    assert client.post(path, message, content_type="application/json").status_code == 401
    assert client.get(path, **basic_auth(track_key)).status_code == 405
    wrong = send(client, "post", path, {**message, "type": "track"}, track_key)
    assert wrong.status_code == 400
    assert f"this endpoint takes '{call_type}' messages" in wrong.json()["message"]
    response = send(client, "post", path, message, track_key)
    assert response.status_code == 200
    assert (response.json()["applied"], response.json()["ignored"]) == (0, 1)
    assert not Profile.objects.exists()


IDENTIFY_WITH_EMAIL = [
    ("/api/v2/users/track", {"id": "u1", "email": "mallory@evil.test", "data": {"plan": "x"}}),
    ("/v1/identify", {"userId": "u1", "traits": {"email": "mallory@evil.test", "plan": "x"}}),
    (
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "identify",
                    "userId": "u1",
                    "traits": {"email": "mallory@evil.test", "plan": "x"},
                }
            ]
        },
    ),
]


@pytest.mark.parametrize("path,body", IDENTIFY_WITH_EMAIL)
def test_a_track_key_cannot_change_a_known_persons_email(client, track_key, path, body):
    # The key is in every visitor's browser: with it, anyone could otherwise
    # send a known person's emails to an address of their own.
    ada = ProfileFactory(user_id="u1", email="ada@example.com", properties={})
    assert send(client, "post", path, body, track_key).status_code == 200
    ada.refresh_from_db()
    assert ada.email == "ada@example.com" and ada.properties["plan"] == "x"


@pytest.mark.parametrize("path,body", IDENTIFY_WITH_EMAIL)
def test_a_track_key_sets_an_email_where_the_profile_has_none(client, track_key, path, body):
    ada = ProfileFactory(user_id="u1", email="", properties={})
    assert send(client, "post", path, body, track_key).status_code == 200
    ada.refresh_from_db()
    assert ada.email == "mallory@evil.test"


@pytest.mark.parametrize("path,body", IDENTIFY_WITH_EMAIL)
def test_a_full_key_changes_a_known_persons_email(client, full_key, path, body):
    ada = ProfileFactory(user_id="u1", email="ada@example.com", properties={})
    assert send(client, "post", path, body, full_key).status_code == 200
    ada.refresh_from_db()
    assert ada.email == "mallory@evil.test"
