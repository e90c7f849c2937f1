"""Pages stay up when the database already holds a time Python cannot hold.

The API refuses such times now (``test_api_hostile_input``), but a row
written before that, or by hand, must not take the profile, segment and
admin pages down: PostgreSQL keeps timestamps up to the year 294276, and
``infinity``; Python's ``datetime`` stops at 9999.
"""

import pytest
from django.db import connection
from django.urls import reverse

from profiles.models import Event, Profile
from profiles.timestamps import EARLIEST, LATEST
from segments.models import Segment
from segments.rules import RulesError, rules_validate
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

STORED = [
    # As the API stored it before the check: 10000-01-01 13:59:59 UTC.
    "9999-12-31T23:59:59-14:00",
    "infinity",
    "-infinity",
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
]


def _insert_event(profile, occurred_at: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_event (profile_id, name, properties, occurred_at, created_at) "
            "VALUES (%s, 'Bad clock', '{}', %s::timestamptz, now()) RETURNING id",
            [profile.pk, occurred_at],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("stored", STORED)
def test_a_time_out_of_pythons_range_is_read_as_the_nearest_time_it_can_hold(stored):
    event_id = _insert_event(ProfileFactory(), stored)
    occurred_at = Event.objects.get(pk=event_id).occurred_at
    assert occurred_at in (LATEST, EARLIEST)
    assert occurred_at.utcoffset().total_seconds() == 0
    with connection.cursor() as cursor:  # a plain timestamp too
        cursor.execute("SELECT %s::timestamptz::timestamp", [stored])
        assert cursor.fetchone()[0] in (LATEST.replace(tzinfo=None), EARLIEST.replace(tzinfo=None))


@pytest.mark.parametrize(
    "url_name",
    [
        "profiles:detail",
        "profiles:events",
        "segments:detail",
        "segments:delete_profiles",
        "segments:deletion_impact",
    ],
)
@pytest.mark.parametrize("stored", STORED)
def test_the_profile_and_segment_pages_answer_with_such_a_row(staff_client, stored, url_name):
    profile = ProfileFactory()
    _insert_event(profile, stored)
    segment = SegmentFactory(member_count=1)
    SegmentMembershipFactory(segment=segment, profile=profile)

    on_segment = url_name.startswith("segments")
    response = staff_client.get(reverse(url_name, args=[segment.pk if on_segment else profile.pk]))
    assert response.status_code == 200
    if url_name == "segments:detail":
        assert profile.email.encode() in response.content
    elif not on_segment:
        assert b"Bad clock" in response.content


@pytest.mark.parametrize("stored", STORED)
def test_the_admin_lists_shows_and_deletes_such_an_event(staff_client, stored):
    event_id = _insert_event(ProfileFactory(), stored)

    assert staff_client.get("/admin/profiles/event/").status_code == 200
    assert staff_client.get(f"/admin/profiles/event/{event_id}/change/").status_code == 200
    assert staff_client.get(f"/admin/profiles/event/{event_id}/delete/").status_code == 200
    response = staff_client.post(f"/admin/profiles/event/{event_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Event.objects.filter(pk=event_id).exists()


# A number of more digits than Python turns into an int (4,300) ----------------

HUGE = "1" + "0" * 5000


def _store_json(table: str, column: str, pk: int, text: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s::jsonb WHERE id = %s", [text, pk])


def test_a_segment_whose_stored_rule_holds_a_huge_number_leaves_the_pages_up(staff_client):
    segment = SegmentFactory(name="Old import")
    _store_json(
        "segments_segment",
        "rules",
        segment.pk,
        '{"match": "all", "conditions": [{"type": "property", "field": "score", '
        f'"operator": "gt", "value": {HUGE}}}]}}',
    )
    assert staff_client.get(reverse("segments:list")).status_code == 200
    for url_name in ("segments:detail", "segments:edit", "segments:delete_profiles"):
        assert staff_client.get(reverse(url_name, args=[segment.pk])).status_code == 200
    rule = Segment.objects.get(pk=segment.pk).rules["conditions"][0]
    assert rule["value"] == float("inf")
    with pytest.raises(RulesError, match="too large a number"):
        rules_validate(Segment.objects.get(pk=segment.pk).rules)


def test_a_profile_or_event_holding_a_huge_number_leaves_its_pages_up(staff_client):
    profile = ProfileFactory()
    event_id = _insert_event(profile, "2024-01-01T00:00:00Z")
    _store_json("profiles_profile", "properties", profile.pk, f'{{"score": -{HUGE}}}')
    _store_json("profiles_event", "properties", event_id, f'{{"items": [{HUGE}]}}')

    for url_name in ("profiles:detail", "profiles:events"):
        assert staff_client.get(reverse(url_name, args=[profile.pk])).status_code == 200
    assert staff_client.get(f"/admin/profiles/profile/{profile.pk}/change/").status_code == 200
    assert Event.objects.get(pk=event_id).properties == {"items": [float("inf")]}
    assert Profile.objects.values_list("properties__score", flat=True).get() == float("-inf")
