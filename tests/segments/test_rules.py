"""Each rule type against a known population.

The expected members of every rule are computed in Python from the
population's description (``People``), never from SQL, and compared with
what the compiled query selects.
"""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from profiles.models import Profile
from segments.rules import RulesError, rules_describe, rules_matching_profiles, rules_validate
from tests.profiles.factories import EventFactory, ProfileFactory, SubscriptionPreferenceFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@dataclass
class Person:
    name: str
    email: str = ""
    user_id: str | None = None
    props: dict = field(default_factory=dict)
    subscribed: bool = True
    topics: dict = field(default_factory=dict)  # topic -> opted in?
    events: list = field(default_factory=list)  # (event name, days ago)

    def count(self, event=None, within_days=None):
        return sum(
            1
            for name, days_ago in self.events
            if (event is None or name == event) and (within_days is None or days_ago < within_days)
        )


PEOPLE = [
    Person(
        "ada",
        email="Ada@Example.com",
        user_id="u-ada",
        props={"plan": "trial", "country": "DE", "age": 34, "signed_up_at": "2024-03-01"},
        topics={"newsletter": True},
        events=[("purchase", 2), ("purchase", 5), ("purchase", 10), ("page_viewed", 200)],
    ),
    Person(
        "ben",
        email="ben@example.org",
        props={"plan": "starter", "country": "FR", "age": "34", "signed_up_at": "2023-12-31"},
        subscribed=False,
        topics={"newsletter": False},
        events=[("purchase", 100)],
    ),
    Person("cy", user_id="u-cy"),
    Person(
        "dee",
        email="dee@example.com",
        user_id="u-dee",
        props={"plan": "trial", "country": "ES", "age": 19.5, "signed_up_at": "not a date"},
        topics={"promotions": True, "newsletter": False},
        events=[("signed_in", d) for d in (1, 3, 8, 15, 19)] + [("purchase", 20), ("purchase", 25)],
    ),
    Person(
        "eve",
        email="eve@mail.test",
        user_id="u-eve",
        props={"plan": None, "country": "de", "age": 70, "signed_up_at": "2025-06-30T12:00:00Z"},
        subscribed=False,
        topics={"newsletter": True},
        events=[("page_viewed", 95)],
    ),
    Person(
        "fay",
        email="fay@example.com",
        user_id="",
        props={"plan": "Trial plan", "vip": True, "age": 30},
        events=[("page_viewed", 40), ("purchase", 45)],
    ),
]


@pytest.fixture
def population():
    """Create PEOPLE; returns {profile id: Person}."""
    created = {}
    for person in PEOPLE:
        profile = ProfileFactory(
            email=person.email,
            user_id=person.user_id,
            properties=person.props,
            subscribed=person.subscribed,
        )
        for topic, opted_in in person.topics.items():
            SubscriptionPreferenceFactory(profile=profile, topic=topic, subscribed=opted_in)
        for name, days_ago in person.events:
            EventFactory(profile=profile, name=name, occurred_at=NOW - timedelta(days=days_ago))
        created[profile.pk] = person
    return created


def selected(rules):
    return set(rules_matching_profiles(rules, now=NOW).values_list("id", flat=True))


def expected(population, predicate):
    return {pk for pk, person in population.items() if predicate(person)}


def names(population, ids):
    return {population[pk].name for pk in ids}


def one(condition):
    return {"match": "all", "conditions": [condition]}


def prop(field_name, operator, *value):
    condition = {"type": "property", "field": field_name, "operator": operator}
    if value:
        condition["value"] = value[0]
    return one(condition)


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_iso_date(value):
    return isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[:4].isdigit()


PROPERTY_CASES = [
    (
        "equals on an attribute",
        prop("plan", "equals", "trial"),
        lambda p: p.props.get("plan") == "trial",
    ),
    (
        "not_equals includes people without the attribute",
        prop("plan", "not_equals", "trial"),
        lambda p: p.props.get("plan") != "trial",
    ),
    (
        "equals compares numbers as numbers, not as text",
        prop("age", "equals", 34),
        lambda p: is_number(p.props.get("age")) and p.props["age"] == 34,
    ),
    (
        "equals on text does not match a number",
        prop("age", "equals", "34"),
        lambda p: p.props.get("age") == "34",
    ),
    ("equals true", prop("vip", "equals", True), lambda p: p.props.get("vip") is True),
    (
        "contains ignores case",
        prop("plan", "contains", "TRIAL"),
        lambda p: isinstance(p.props.get("plan"), str) and "trial" in p.props["plan"].lower(),
    ),
    ("exists", prop("plan", "exists"), lambda p: p.props.get("plan") is not None),
    ("not_exists", prop("plan", "not_exists"), lambda p: p.props.get("plan") is None),
    (
        "gt on numbers skips text values",
        prop("age", "gt", 30),
        lambda p: is_number(p.props.get("age")) and p.props["age"] > 30,
    ),
    (
        "lt on numbers",
        prop("age", "lt", 30.5),
        lambda p: is_number(p.props.get("age")) and p.props["age"] < 30.5,
    ),
    (
        "gt on dates",
        prop("signed_up_at", "gt", "2024-01-01"),
        lambda p: (
            is_iso_date(p.props.get("signed_up_at")) and p.props["signed_up_at"][:10] > "2024-01-01"
        ),
    ),
    (
        "lt on dates",
        prop("signed_up_at", "lt", "2024-03-01"),
        lambda p: (
            is_iso_date(p.props.get("signed_up_at")) and p.props["signed_up_at"][:10] < "2024-03-01"
        ),
    ),
    (
        "email equals ignores case",
        prop("email", "equals", "ada@example.COM"),
        lambda p: p.email.lower() == "ada@example.com",
    ),
    (
        "email not_equals",
        prop("email", "not_equals", "ada@example.com"),
        lambda p: p.email.lower() != "ada@example.com",
    ),
    (
        "email contains",
        prop("email", "contains", "@EXAMPLE."),
        lambda p: "@example." in p.email.lower(),
    ),
    ("email exists", prop("email", "exists"), lambda p: p.email != ""),
    ("email not_exists", prop("email", "not_exists"), lambda p: p.email == ""),
    ("user_id equals", prop("user_id", "equals", "u-dee"), lambda p: p.user_id == "u-dee"),
    (
        "user_id not_equals includes people without one",
        prop("user_id", "not_equals", "u-dee"),
        lambda p: p.user_id != "u-dee",
    ),
    (
        "user_id contains",
        prop("user_id", "contains", "E"),
        lambda p: "e" in (p.user_id or "").lower(),
    ),
    ("user_id exists", prop("user_id", "exists"), lambda p: bool(p.user_id)),
    ("user_id not_exists", prop("user_id", "not_exists"), lambda p: not p.user_id),
]


@pytest.mark.parametrize(
    ("rules", "predicate"),
    [case[1:] for case in PROPERTY_CASES],
    ids=[case[0] for case in PROPERTY_CASES],
)
def test_property_conditions_select_exactly_the_expected_people(population, rules, predicate):
    assert selected(rules) == expected(population, predicate)


def sub(status, topic=None):
    condition = {"type": "subscription", "status": status}
    if topic:
        condition["topic"] = topic
    return one(condition)


SUBSCRIPTION_CASES = [
    ("subscribed to email", sub("subscribed"), lambda p: p.subscribed),
    ("unsubscribed from all email", sub("unsubscribed"), lambda p: not p.subscribed),
    (
        "opted in to a topic",
        sub("subscribed", "newsletter"),
        lambda p: p.topics.get("newsletter") is True,
    ),
    (
        "opted out of a topic",
        sub("unsubscribed", "newsletter"),
        lambda p: p.topics.get("newsletter") is False,
    ),
    ("a topic nobody chose", sub("subscribed", "nothing"), lambda p: False),
]


@pytest.mark.parametrize(
    ("rules", "predicate"),
    [case[1:] for case in SUBSCRIPTION_CASES],
    ids=[case[0] for case in SUBSCRIPTION_CASES],
)
def test_subscription_conditions_select_exactly_the_expected_people(population, rules, predicate):
    assert selected(rules) == expected(population, predicate)


def event(operator, event_name=None, count=None, within_days=None):
    condition = {"type": "event", "operator": operator}
    if event_name:
        condition["event"] = event_name
    if count is not None:
        condition["count"] = count
    if within_days:
        condition["within_days"] = within_days
    return one(condition)


EVENT_CASES = [
    (
        "did an event at least once",
        event("at_least", "purchase", 1),
        lambda p: p.count("purchase") >= 1,
    ),
    (
        "did an event at least 3 times",
        event("at_least", "purchase", 3),
        lambda p: p.count("purchase") >= 3,
    ),
    (
        "at least twice within 30 days",
        event("at_least", "purchase", 2, 30),
        lambda p: p.count("purchase", 30) >= 2,
    ),
    ("any event at least 5 times", event("at_least", None, 5), lambda p: p.count() >= 5),
    (
        "at most once, including never",
        event("at_most", "purchase", 1),
        lambda p: p.count("purchase") <= 1,
    ),
    (
        "at most 2 within 30 days",
        event("at_most", "purchase", 2, 30),
        lambda p: p.count("purchase", 30) <= 2,
    ),
    ("at most 0 is never", event("at_most", "purchase", 0), lambda p: p.count("purchase") == 0),
    ("did not do an event", event("not_done", "purchase"), lambda p: p.count("purchase") == 0),
    (
        "did nothing in the last 90 days",
        event("not_done", None, None, 90),
        lambda p: p.count(within_days=90) == 0,
    ),
    ("did nothing ever", event("not_done"), lambda p: not p.events),
]


@pytest.mark.parametrize(
    ("rules", "predicate"),
    [case[1:] for case in EVENT_CASES],
    ids=[case[0] for case in EVENT_CASES],
)
def test_event_conditions_select_exactly_the_expected_people(population, rules, predicate):
    assert selected(rules) == expected(population, predicate)


def test_all_of_needs_every_condition(population):
    rules = {
        "match": "all",
        "conditions": [
            {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
            {"type": "event", "event": "purchase", "operator": "at_least", "count": 3},
        ],
    }
    want = expected(
        population, lambda p: p.props.get("plan") == "trial" and p.count("purchase") >= 3
    )
    assert selected(rules) == want
    assert names(population, want) == {"ada"}


def test_any_of_needs_one_condition(population):
    rules = {
        "match": "any",
        "conditions": [
            {"type": "subscription", "status": "unsubscribed"},
            {"type": "event", "operator": "not_done"},
        ],
    }
    want = expected(population, lambda p: not p.subscribed or not p.events)
    assert selected(rules) == want
    assert names(population, want) == {"ben", "cy", "eve"}


def test_groups_nest_one_level(population):
    """The seeded "Churn risk" shape: (country FR or ES) and (trial or starter)
    and never purchased in 30 days."""
    rules = {
        "match": "all",
        "conditions": [
            {
                "match": "any",
                "conditions": [
                    {"type": "property", "field": "country", "operator": "equals", "value": "FR"},
                    {"type": "property", "field": "country", "operator": "equals", "value": "ES"},
                ],
            },
            {
                "match": "any",
                "conditions": [
                    {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
                    {"type": "property", "field": "plan", "operator": "equals", "value": "starter"},
                ],
            },
            {"type": "event", "event": "purchase", "operator": "not_done", "within_days": 30},
        ],
    }
    want = expected(
        population,
        lambda p: (
            p.props.get("country") in ("FR", "ES")
            and p.props.get("plan") in ("trial", "starter")
            and p.count("purchase", 30) == 0
        ),
    )
    assert selected(rules) == want
    assert names(population, want) == {"ben"}


def test_counted_conditions_combine_under_any(population):
    rules = {
        "match": "any",
        "conditions": [
            {"type": "event", "event": "signed_in", "operator": "at_least", "count": 5},
            {"type": "event", "event": "purchase", "operator": "at_most", "count": 0},
        ],
    }
    want = expected(population, lambda p: p.count("signed_in") >= 5 or p.count("purchase") == 0)
    assert selected(rules) == want


def test_rules_compile_to_one_query(population, django_assert_num_queries):
    rules = {
        "match": "all",
        "conditions": [
            {"type": "subscription", "status": "subscribed", "topic": "newsletter"},
            {"type": "event", "event": "purchase", "operator": "at_least", "count": 2},
            {"type": "property", "field": "age", "operator": "gt", "value": 18},
        ],
    }
    with django_assert_num_queries(1):
        selected(rules)


def test_user_values_travel_as_parameters_never_as_sql(population):
    hostile = "x') OR 1=1; DROP TABLE profiles_profile; --"
    rules = {
        "match": "any",
        "conditions": [
            {"type": "property", "field": hostile, "operator": "equals", "value": hostile},
            {"type": "property", "field": "plan", "operator": "contains", "value": "%"},
            {"type": "event", "event": hostile, "operator": "at_least", "count": 1},
            {"type": "subscription", "status": "subscribed", "topic": hostile},
        ],
    }
    sql, params = rules_matching_profiles(rules, now=NOW).query.sql_with_params()
    assert hostile not in sql
    assert hostile in params
    assert selected(rules) == set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM profiles_profile")
        assert cursor.fetchone()[0] == len(PEOPLE)
    assert Profile.objects.count() == len(PEOPLE)


# Validation ----------------------------------------------------------------

INVALID = [
    ("not an object", [], "Rules: must be an object"),
    ("unknown match", {"match": "some", "conditions": []}, "“match” must be “all” or “any”"),
    ("empty group", {"match": "all", "conditions": []}, "Rules: the group is empty"),
    (
        "empty nested group",
        {"match": "all", "conditions": [{"match": "any", "conditions": []}]},
        "Condition 1: the group is empty",
    ),
    (
        "groups nested twice",
        {
            "match": "all",
            "conditions": [
                {"match": "any", "conditions": [{"match": "all", "conditions": []}]},
            ],
        },
        "Condition 1.1: groups can be nested one level deep only",
    ),
    ("unknown condition type", one({"type": "mood"}), "Condition 1: unknown condition type “mood”"),
    (
        "unknown operator",
        prop("plan", "is_like", "x"),
        "Condition 1: unknown operator “is_like”",
    ),
    ("missing value", prop("plan", "equals"), "“equals” needs a “value”"),
    ("value where none is taken", prop("plan", "exists", "x"), "“exists” takes no “value”"),
    ("list as a value", prop("plan", "equals", ["trial"]), "not a list"),
    ("text for gt", prop("age", "gt", "old"), "“gt” needs a number or a date"),
    ("impossible date", prop("signed_up_at", "lt", "2024-02-30"), "YYYY-MM-DD"),
    ("gt on email", prop("email", "gt", 3), "compares numbers and dates, not email"),
    ("number for email", prop("email", "equals", 3), "email is text"),
    ("empty contains", prop("plan", "contains", ""), "non-empty text"),
    (
        "missing field",
        one({"type": "property", "operator": "exists"}),
        "“field” must be “email”, “user_id” or an attribute name",
    ),
    (
        "misspelt key",
        one({"type": "property", "field": "plan", "operater": "exists"}),
        "unknown key “operater”",
    ),
    ("bad status", sub("maybe"), "“status” must be “subscribed” or “unsubscribed”"),
    ("count missing", event("at_least", "purchase"), "needs a whole number “count” of at least 1"),
    ("count zero for at_least", event("at_least", "purchase", 0), "of at least 1"),
    ("count as text", event("at_most", "purchase", "3"), "whole number “count”"),
    ("count with not_done", event("not_done", "purchase", 2), "“not_done” takes no “count”"),
    ("negative days", event("not_done", "purchase", None, -5), "not -5"),
    (
        "days as true",
        one({"type": "event", "operator": "not_done", "within_days": True}),
        "“within_days” must be a whole number",
    ),
    ("blank event name", one({"type": "event", "event": " ", "operator": "not_done"}), "“event”"),
    ("a 400-digit number", prop("score", "gt", 10**400), "too large a number"),
    ("a 400-digit number to equal", prop("score", "equals", -(10**400)), "too large a number"),
    ("1e400, read as infinity", prop("score", "lt", float("inf")), "too large a number"),
    ("NaN", prop("score", "gt", float("nan")), "is not a number (NaN)"),
    ("NaN to equal", prop("score", "not_equals", float("nan")), "is not a number (NaN)"),
    ("just over 1e308", prop("score", "gt", 1.5e308), "between -1e308 and 1e308"),
    ("a count of 400 digits", event("at_least", "purchase", 10**400), "not a number too large"),
]


def test_numbers_up_to_1e308_are_taken_and_compared(population):
    with_a_number = expected(population, lambda p: is_number(p.props.get("age")))
    assert selected(prop("age", "lt", 1e308)) == with_a_number
    assert selected(prop("age", "gt", -(10**308))) == with_a_number
    assert selected(prop("age", "gt", 10**308)) == set()


@pytest.mark.parametrize(
    ("rules", "message"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_rules_are_refused_with_a_message_that_says_where(rules, message):
    with pytest.raises(RulesError) as refused:
        rules_validate(rules)
    assert any(message in error for error in refused.value.errors), refused.value.errors


def test_every_problem_is_reported_at_once():
    rules = {
        "match": "all",
        "conditions": [prop("plan", "nope", 1)["conditions"][0], {"type": "subscription"}],
    }
    with pytest.raises(RulesError) as refused:
        rules_validate(rules)
    assert [error.split(":")[0] for error in refused.value.errors] == ["Condition 1", "Condition 2"]


def test_compiling_invalid_rules_raises():
    with pytest.raises(RulesError):
        rules_matching_profiles({"match": "all", "conditions": []})


def test_the_seeded_rules_are_valid():
    from segments.management.commands.seed_demo import DEMO_SEGMENTS

    for _name, _description, rules in DEMO_SEGMENTS:
        rules_validate(rules)


# Plain words ---------------------------------------------------------------


def test_rules_read_as_plain_words():
    rules = {
        "match": "all",
        "conditions": [
            {"type": "event", "operator": "not_done", "within_days": 90},
            {
                "type": "event",
                "event": "purchase",
                "operator": "at_least",
                "count": 3,
                "within_days": 60,
            },
            {"type": "subscription", "status": "unsubscribed"},
            {"type": "subscription", "status": "subscribed", "topic": "newsletter"},
            {
                "match": "any",
                "conditions": [
                    {"type": "property", "field": "country", "operator": "equals", "value": "DE"},
                    {"type": "property", "field": "age", "operator": "gt", "value": 30},
                    {
                        "type": "property",
                        "field": "signed_up_at",
                        "operator": "lt",
                        "value": "2024-01-01",
                    },
                    {"type": "property", "field": "email", "operator": "not_exists"},
                ],
            },
        ],
    }
    described = rules_describe(rules)
    assert described.text == "All of these:"
    assert [item.text for item in described.children[:4]] == [
        "Did nothing in the last 90 days",
        "Did “purchase” at least 3 times in the last 60 days",
        "Unsubscribed from all email",
        "Opted in to the “newsletter” topic",
    ]
    group = described.children[4]
    assert group.text == "Any of these:"
    assert [item.text for item in group.children] == [
        "Attribute “country” is “DE”",
        "Attribute “age” is greater than 30",
        "Attribute “signed_up_at” is before 2024-01-01",
        "Email is not set",
    ]


def test_invalid_rules_are_described_as_invalid():
    described = rules_describe({"match": "all", "conditions": []})
    assert "not valid" in described.text
    assert "empty" in described.children[0].text
