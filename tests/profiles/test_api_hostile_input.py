"""What a careless or hostile client sends: each value is refused at the door
with a JSON 400 that names it, and nothing is written (issue 17)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from profiles.models import Event, Profile, SeenMessage
from profiles.services import api_key_create
from tests.profiles.test_api import basic_auth, nothing_written

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def key():
    _, raw_key = api_key_create(name="Server", scope="full")
    return raw_key


def post(client, path, raw: str, key: str):
    send = client.put if path in ("/api/v2/users/edit", "/api/v2/users/tags/edit") else client.post
    return send(path, raw, content_type="application/json", **basic_auth(key))


def assert_refused(response, *words):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    message = response.json()["message"]
    for word in words:
        assert word in message, message
    assert nothing_written()
    assert not SeenMessage.objects.exists()


# --- timestamps -------------------------------------------------------------------


def _soon():
    return (datetime.now(UTC) + timedelta(days=2)).isoformat()


BAD_TIMES = [
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    -1,
    253402300800,  # 10000-01-01 in Unix seconds
    1e300,
]


def _event(created_at):
    return {"identity": {"id": "u1"}, "event_name": "x", "extras": {"created_at": created_at}}


def _track(**times):
    return {"type": "track", "userId": "u1", "event": "x", **times}


def _identify(**times):
    return {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, **times}


@pytest.mark.parametrize("when", [*BAD_TIMES, "soon"])
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v2/events/track", _event, "extras.created_at"),
        ("/v1/track", lambda t: _track(timestamp=t), "timestamp"),
        ("/v1/identify", lambda t: _identify(timestamp=t), "timestamp"),
        ("/v1/track", lambda t: _track(originalTimestamp=t), "originalTimestamp"),
        ("/v1/track", lambda t: _track(sentAt=t), "sentAt"),
        ("/v1/identify", lambda t: _identify(receivedAt=t), "receivedAt"),
        ("/v1/batch", lambda t: {"batch": [_identify(), _track(timestamp=t)]}, "timestamp"),
        ("/v1/batch", lambda t: {"batch": [_identify()], "sentAt": t}, "sentAt"),
    ],
)
def test_a_time_outside_1970_to_tomorrow_is_refused_naming_the_field(
    client, key, path, body, field, when
):
    when = _soon() if when == "soon" else when
    response = post(client, path, json.dumps(body(when)), key)
    assert_refused(response, f'"{field}"')
    message = response.json()["message"]
    assert "1970-01-01T00:00:00Z" in message or "not a valid Unix timestamp" in message


@pytest.mark.parametrize(
    "when",
    [
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # full-width digits
        "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",  # Arabic-Indic digits
    ],
)
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v2/events/track", _event, "extras.created_at"),
        ("/v1/track", lambda t: _track(timestamp=t), "timestamp"),
        ("/v1/batch", lambda t: {"batch": [_identify()], "sentAt": t}, "sentAt"),
    ],
)
def test_a_time_written_with_other_digits_than_0_to_9_is_refused(
    client, key, path, body, field, when
):
    """Django's parse_datetime reads any Unicode digit, so these were stored as 2024."""
    response = post(client, path, json.dumps(body(when)), key)
    assert_refused(response, f'"{field}"', "ISO 8601")


@pytest.mark.parametrize("when", ["1970-01-01T00:00:00Z", 0, "in an hour"])
def test_times_at_the_edges_of_the_window_are_accepted(client, key, when):
    if when == "in an hour":
        when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = post(client, "/api/v2/events/track", json.dumps(_event(when)), key)
    assert response.status_code == 200, response.content
    assert Event.objects.get().occurred_at.year in (1970, datetime.now(UTC).year)


# --- numbers ----------------------------------------------------------------------

HUGE = "1" + "0" * 400  # 10**400 as a JSON literal


@pytest.mark.parametrize("literal", [HUGE, "-" + HUGE, "1e400", "-1e400"])
@pytest.mark.parametrize(
    ("path", "template", "field"),
    [
        ("/api/v2/users/track", '{"id": "u1", "data": {"score": %s}}', "body.data.score"),
        (
            "/api/v2/events/track",
            '{"identity": {"id": "u1"}, "event_name": "x", "data": {"n": [1, %s]}}',
            "body.data.n[1]",
        ),
        ("/api/v2/users/edit", '{"id": "u1", "changes": {"score": %s}}', "body.changes.score"),
        ("/v1/identify", '{"userId": "u1", "traits": {"score": %s}}', "body.traits.score"),
        (
            "/v1/track",
            '{"userId": "u1", "event": "x", "properties": {"a": {"b": %s}}}',
            "body.properties.a.b",
        ),
        (
            "/v1/batch",
            '{"batch": [{"type": "track", "userId": "u1", "event": "x", '
            '"properties": {"score": %s}}]}',
            "body.batch[0].properties.score",
        ),
    ],
)
def test_a_number_beyond_the_float_range_is_refused_naming_the_field(
    client, key, path, template, field, literal
):
    response = post(client, path, template % literal, key)
    assert_refused(response, field)


def test_an_integer_with_thousands_of_digits_is_refused(client, key):
    raw = '{"id": "u1", "data": {"score": 1%s}}' % ("0" * 5000)
    assert_refused(post(client, "/api/v2/users/track", raw, key), "not valid JSON")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(client, key, literal):
    raw = f'{{"id": "u1", "data": {{"score": {literal}}}}}'
    assert_refused(post(client, "/api/v2/users/track", raw, key), literal)


def test_the_largest_float_is_accepted(client, key):
    raw = '{"id": "u1", "data": {"score": 1.7976931348623157e308, "n": -%s}}' % ("9" * 300)
    assert post(client, "/api/v2/users/track", raw, key).status_code == 200
    assert float(Profile.objects.get().properties["score"]) == 1.7976931348623157e308


# --- text: lone surrogates and NUL ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "where"),
    [
        ("/api/v2/users/track", '{"id": "u1", "data": {"name": "a\\ud800b"}}', "body.data.name"),
        ("/api/v2/users/track", '{"id": "\\udfff", "data": {}}', "body.id"),
        ("/api/v2/users/track", '{"id": "u1", "data": {"\\ud83d": 1}}', "a key in body.data"),
        (
            "/api/v2/events/track",
            '{"identity": {"id": "u1"}, "event_name": "\\ud800"}',
            "body.event_name",
        ),
        (
            "/v1/batch",
            '{"batch": [{"type": "track", "userId": "u1", "event": "x", '
            '"properties": {"tags": ["ok", "\\ud800"]}}]}',
            "body.batch[0].properties.tags[1]",
        ),
        ("/v1/track", '{"userId": "u1", "event": "x", "messageId": "\\ud800"}', "body.messageId"),
    ],
)
def test_a_lone_surrogate_is_a_json_400_that_says_where(client, key, path, raw, where):
    response = post(client, path, raw, key)
    assert_refused(response, "Invalid text: lone surrogate at", where)


def test_a_lone_surrogate_in_the_key_field_is_a_json_400(client):
    response = client.post(
        "/api/v2/users/track",
        '{"id": "u1", "tracking_api_key": "\\ud800"}',
        content_type="application/json",
    )
    assert_refused(response, "lone surrogate")


@pytest.mark.parametrize(
    ("path", "raw", "where"),
    [
        ("/api/v2/users/track", '{"id": "u1", "data": {"a\\u0000": 1}}', "a key in body.data"),
        ("/v1/identify", '{"userId": "u1", "traits": {"name": "a\\u0000"}}', "body.traits.name"),
    ],
)
def test_nul_in_any_string_is_refused(client, key, path, raw, where):
    assert_refused(post(client, path, raw, key), "NUL", where)


def test_nul_in_the_query_of_a_bodiless_delete_is_refused(client, key):
    response = client.delete("/api/v2/users/delete?id=a%00b", **basic_auth(key))
    assert response.status_code == 400
    assert "NUL" in response.json()["message"]


# --- anonymous visitors in a Segment batch ----------------------------------------


def test_anonymous_messages_in_a_batch_are_skipped_and_the_rest_stored(client, key):
    batch = [
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed", "properties": {"n": 1}},
        {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}},
        {"type": "identify", "anonymousId": "anon-1", "traits": {"plan": "free"}},
        {"type": "track", "userId": "u1", "anonymousId": "anon-1", "event": "Paid"},
        {"type": "page", "anonymousId": "anon-1", "name": "Home"},
    ]
    response = post(client, "/v1/batch", json.dumps({"batch": batch}), key)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "success": True,
        "applied": 2,
        "duplicates": 0,
        "ignored": 3,
        "suppressed": 0,
    }
    assert list(Profile.objects.values_list("user_id", "email")) == [("u1", "ada@example.com")]
    assert list(Event.objects.values_list("name", flat=True)) == ["Paid"]


def test_an_anonymous_identify_with_an_email_is_still_stored_by_email(client, key):
    message = {"anonymousId": "a1", "traits": {"email": "ada@example.com"}}
    response = post(client, "/v1/identify", json.dumps(message), key)
    assert response.json()["applied"] == 1
    assert Profile.objects.get().email == "ada@example.com"


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"type": "track", "event": "x"}, ('"anonymousId"',)),
        ({"type": "track", "anonymousId": "a1"}, ('"event" is required',)),
        ({"type": "track", "anonymousId": ["a1"], "event": "x"}, ('"anonymousId" must be',)),
        ({"type": "track", "anonymousId": "a1", "event": "x", "timestamp": "x"}, ("timestamp",)),
        ({"type": "identify", "anonymousId": "a1", "traits": {"email": "x"}}, ("email",)),
    ],
)
def test_a_malformed_anonymous_message_still_refuses_the_whole_batch(client, key, message, words):
    batch = [{"type": "identify", "userId": "u1"}, message]
    response = post(client, "/v1/batch", json.dumps({"batch": batch}), key)
    assert_refused(response, "batch[1]: ", *words)
    assert response.json()["item"] == 1


def test_a_batch_from_segments_node_library_with_an_anonymous_visitor_is_stored(client, key):
    """The body ``@segment/analytics-node`` sent for identify, track and an
    anonymous track (tests/profiles/fixtures/README.md says how it was made)."""
    body = json.loads((FIXTURES / "analytics_node_batch.json").read_text())
    body["writeKey"] = key
    response = post(client, "/v1/batch", json.dumps(body), key)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["applied"], body["ignored"]) == (2, 1)
    profile = Profile.objects.get()
    assert profile.user_id == "user-1"
    assert list(profile.events.values_list("name", flat=True)) == ["Order Completed"]
