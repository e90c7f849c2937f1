"""The builder's counts and pickers: exact when there is time, an estimate
labelled as one when not, and the lists of attributes, events and topics."""

import pytest
from django.core.cache import cache
from django.db import connection

from segments import catalogue, counting
from segments.catalogue import catalogue_build, catalogue_get
from segments.counting import Count, rules_counts
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory
from tests.segments.factories import SegmentFactory

pytestmark = pytest.mark.django_db


def one(condition):
    return {"match": "all", "conditions": [condition]}


TRIAL = one({"type": "property", "field": "plan", "operator": "equals", "value": "trial"})
NOBODY = one({"type": "property", "field": "plan", "operator": "equals", "value": "nope"})


@pytest.mark.parametrize(
    ("count", "text", "sentence"),
    [
        (Count(1), "1", "1 person matches these rules."),
        (Count(1234), "1,234", "1,234 people match these rules."),
        (
            Count(480_000, exact=False),
            "about 480,000",
            "About 480,000 people match these rules (an estimate from a sample: "
            "counting every profile took too long).",
        ),
        (Count(300, exact=False, under=True), "under about 300", "Under about 300 people"),
        (Count(None, exact=False), "not known", "Counting took too long"),
    ],
)
def test_a_count_says_whether_it_is_exact(count, text, sentence):
    assert count.text == text
    assert count.sentence.startswith(sentence)


def test_counts_are_exact_when_there_is_time():
    ProfileFactory.create_batch(3, properties={"plan": "trial"})
    ProfileFactory(properties={"plan": "pro"})
    assert rules_counts({"trial": TRIAL, "nobody": NOBODY}) == {
        "trial": Count(3),
        "nobody": Count(0),
    }


@pytest.fixture
def many_profiles():
    """30,000 profiles, every other one on the trial plan, made in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_profile
              (user_id, email, properties, tags, subscribed, created_at, updated_at)
            SELECT 'u' || i, '', jsonb_build_object('plan', CASE WHEN i % 2 = 0
                   THEN 'trial' ELSE 'pro' END, 'pad', repeat('x', 100)),
                   '{}', true, now(), now()
            FROM generate_series(1, 30000) i
            """
        )
        cursor.execute("ANALYZE profiles_profile")


def test_a_count_that_runs_out_of_time_falls_back_to_an_estimate_labelled_about(
    many_profiles, monkeypatch
):
    monkeypatch.setattr(counting, "EXACT_TIMEOUT_MS", 1)
    monkeypatch.setattr(counting, "ESTIMATE_TIMEOUT_MS", 10_000)
    monkeypatch.setattr(counting, "SAMPLE_PAGES", 40)
    counts = rules_counts({"trial": TRIAL, "nobody": NOBODY})
    trial, nobody = counts["trial"], counts["nobody"]
    assert not trial.exact and trial.text.startswith("about ")
    assert 12_000 <= trial.value <= 18_000
    assert not nobody.exact and nobody.under and nobody.text.startswith("under about ")


def test_the_pickers_list_attribute_names_with_their_type_event_names_and_topics():
    ada = ProfileFactory(
        properties={"plan": "trial", "age": 34, "vip": True, "since": "2024-03-01", "0": "x"}
    )
    ProfileFactory(properties={"age": 40, "note": None})
    EventFactory(profile=ada, name="purchase")
    EventFactory(profile=ada, name="signed_in")
    EventFactory(profile=ada, name="purchase")
    SubscriptionPreferenceFactory(profile=ada, topic="newsletter")
    SegmentFactory(rules=one({"type": "property", "field": "rare", "operator": "exists"}))
    found = catalogue_build()
    assert {(a.name, a.kind) for a in found.attributes} == {
        ("0", "text"),
        ("age", "number"),
        ("plan", "text"),
        ("rare", "text"),
        ("since", "date"),
        ("vip", "boolean"),
    }
    assert found.events == ("purchase", "signed_in")
    assert found.topics == ("newsletter",)


def test_the_pickers_are_cached(monkeypatch):
    cache.delete(catalogue.CACHE_KEY)
    ProfileFactory(properties={"plan": "trial"})
    assert [a.name for a in catalogue_get().attributes] == ["plan"]
    ProfileFactory(properties={"country": "FR"})
    assert [a.name for a in catalogue_get().attributes] == ["plan"]
    cache.delete(catalogue.CACHE_KEY)
    assert [a.name for a in catalogue_get().attributes] == ["country", "plan"]
