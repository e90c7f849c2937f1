from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from profiles import selectors
from profiles.models import Profile
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db


def found(query):
    return set(selectors.profile_search(query=query).values_list("email", flat=True))


def test_the_search_finds_any_part_of_an_email_a_user_id_or_an_attribute_value():
    ProfileFactory(email="ada.lovelace@example.com", user_id="crm-1815", properties={})
    ProfileFactory(email="bea@example.org", user_id="crm-2000", properties={"city": "Lovelock"})
    ProfileFactory(email="cy@example.net", user_id="x", properties={"first_name": "Grace"})
    assert found("LOVELACE") == {"ada.lovelace@example.com"}
    assert found("m-18") == {"ada.lovelace@example.com"}
    assert found("lovel") == {"ada.lovelace@example.com", "bea@example.org"}
    assert found("grac") == {"cy@example.net"}
    assert found("example.") == {"ada.lovelace@example.com", "bea@example.org", "cy@example.net"}


def test_the_search_reads_nested_values_and_numbers_but_not_keys_or_true_false_null():
    ProfileFactory(
        email="nested@example.com",
        properties={
            "address": {"city": "Reykjavik", "zip": [101, {"floor": "third"}]},
            "ltv": 4242,
        },
    )
    ProfileFactory(email="flags@example.com", properties={"vip": True, "churned": None})
    assert found("reykjav") == found("4242") == found("third") == found("101")
    assert found("reykjav") == {"nested@example.com"}
    assert found("address") == found("city") == set()  # keys are not searched
    assert found("true") == found("null") == set()


def test_like_wildcards_in_a_query_are_plain_characters():
    ProfileFactory(email="percent@example.com", properties={"code": "50%_off"})
    ProfileFactory(email="other@example.com", properties={"code": "500 off"})
    assert found("50%_o") == {"percent@example.com"}
    assert found("0_of") == set()


def test_a_query_too_short_for_the_index_finds_only_an_exact_user_id_or_email():
    ProfileFactory(email="ab@example.com", user_id="ab")
    ProfileFactory(email="abe@example.com", user_id="abe")
    assert found("ab") == {"ab@example.com"}
    assert found("AB@EXAMPLE.COM") == {"ab@example.com"}


@pytest.mark.parametrize(
    "query, indexed",
    [
        ("abc", True),
        ("ab", False),
        ("@.-", False),
        ("a.b", True),
        ("ab.", True),
        ("--x-", True),
        ("x--", False),
    ],
)
def test_a_query_uses_the_index_when_it_holds_a_trigram(query, indexed):
    assert selectors.search_uses_index(query) is indexed


def test_the_search_is_answered_by_the_trigram_index():
    """The query repeats the index's expression exactly (else a million rows are read)."""
    ProfileFactory.create_batch(3)
    sql, params = selectors.profile_search(query="lovelace").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "profile_search_trgm_idx" in plan, plan


def test_the_exact_match_is_a_whole_user_id_or_email():
    ada = ProfileFactory(email="ada@example.com", user_id="u12")
    ProfileFactory(email="other@example.com", user_id="u123")
    assert selectors.profile_exact_match(query="u12") == ada
    assert selectors.profile_exact_match(query="ADA@example.com") == ada
    assert selectors.profile_exact_match(query="u1") is None


def test_events_are_paged_newest_first_without_gaps_or_repeats_when_times_tie():
    profile = ProfileFactory()
    moment = timezone.now()
    events = [
        EventFactory(profile=profile, occurred_at=moment - timedelta(minutes=i // 3))
        for i in range(8)
    ]
    seen, older = [], None
    while True:
        page = selectors.profile_events_page(profile=profile, older_than=older, limit=3)
        seen += page.events
        if page.older is None:
            break
        older = page.older
    assert [e.pk for e in seen] == [
        e.pk for e in sorted(events, key=lambda e: (e.occurred_at, e.pk), reverse=True)
    ]


def test_a_persons_segments_are_listed_by_name():
    profile = ProfileFactory()
    for name in ("Zebra", "Alpha"):
        SegmentMembershipFactory(profile=profile, segment=SegmentFactory(name=name))
    SegmentFactory(name="Not theirs")
    names = [m.segment.name for m in selectors.profile_segments(profile=profile)]
    assert names == ["Alpha", "Zebra"]


def test_the_search_of_every_profile_is_all_profiles():
    ProfileFactory.create_batch(2)
    assert selectors.profile_search(query="  ").count() == Profile.objects.count() == 2
