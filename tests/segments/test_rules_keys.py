"""Attribute names are text keys in every operator, and stored numbers
beyond double precision are skipped, not fatal.

Django reads a JSON key that looks like a number ("0", "-1", " 1 ", "2024")
as an array index; these tests hold the rules to the attribute's name. The
expected members are computed in Python from the stored values.
"""

import json

import pytest
from django.db import connection
from django.utils import timezone

from profiles.models import Profile
from segments import services
from segments.builder import OPERATORS
from segments.counting import rules_counts
from segments.models import SegmentMembership
from segments.rules import rules_matching_profiles
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()
KEYS = ["2024", "0", "-1", " 1 ", "1", "plan"]
VALUES = {
    "text": "gold",
    "other text": "Golden",
    "small number": 5,
    "large number": 30,
    "float": 12.5,
    "date": "2024-05-01",
    "later date": "2025-02-03T10:00:00Z",
    "true": True,
    "null": None,
    "list": ["gold"],
}

MISSING = object()


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_text(value):
    if value is MISSING or value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def is_date(value):
    return isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[:4].isdigit()


# Every operator the builder offers on an attribute, with values of each type.
CASES = [
    ("exists", None, lambda v: v is not MISSING and v is not None),
    ("not_exists", None, lambda v: v is MISSING or v is None),
    ("equals", "gold", lambda v: v == "gold"),
    ("not_equals", "gold", lambda v: v != "gold"),
    ("equals", 5, lambda v: is_number(v) and v == 5),
    ("not_equals", 5, lambda v: not (is_number(v) and v == 5)),
    ("equals", True, lambda v: v is True),
    ("not_equals", True, lambda v: v is not True),
    # contains reads the value as text: a string as it is, anything else as JSON.
    ("contains", "OL", lambda v: "ol" in as_text(v).lower()),
    ("gt", 10, lambda v: is_number(v) and v > 10),
    ("lt", 10, lambda v: is_number(v) and v < 10),
    ("gt", "2024-06-01", lambda v: is_date(v) and v[:10] > "2024-06-01"),
    ("lt", "2024-06-01", lambda v: is_date(v) and v[:10] < "2024-06-01"),
]


def test_the_cases_cover_every_operator_the_builder_offers_on_an_attribute():
    offered = {op for choices in OPERATORS.values() for op, _ in choices}
    assert offered == {operator for operator, _, _ in CASES}


def rule(key, operator, value):
    condition = {"type": "property", "field": key, "operator": operator}
    if value is not None:
        condition["value"] = value
    return {"match": "all", "conditions": [condition]}


@pytest.fixture
def people():
    """{profile id: {key: value}} — every key with every kind of value, one
    profile each, and profiles with other keys or none."""
    stored = {}
    for key in KEYS:
        for value in VALUES.values():
            profile = ProfileFactory(properties={key: value, "unrelated": "gold"})
            stored[profile.pk] = {key: value}
    for properties in ({}, {"unrelated": 5}, {"20240": "gold", "01": 5, "1 ": True}):
        stored[ProfileFactory(properties=properties).pk] = properties
    return stored


def expected(people, key, predicate):
    return {pk for pk, props in people.items() if predicate(props.get(key, MISSING))}


@pytest.mark.parametrize("key", KEYS, ids=[repr(key) for key in KEYS])
@pytest.mark.parametrize(
    ("operator", "value", "predicate"),
    CASES,
    ids=[f"{operator} {value!r}" for operator, value, _ in CASES],
)
def test_a_rule_on_an_attribute_selects_exactly_the_people_whose_attribute_matches(
    people, key, operator, value, predicate
):
    selected = set(
        rules_matching_profiles(rule(key, operator, value), now=NOW).values_list("id", flat=True)
    )
    assert selected == expected(people, key, predicate)


@pytest.mark.parametrize("key", ["2024", "-1", " 1 "], ids=repr)
def test_the_builder_counts_agree_with_the_members(people, key):
    parts = {f"{op} {value!r}": rule(key, op, value) for op, value, _ in CASES}
    counts = rules_counts(parts, now=NOW)
    for (_, _, predicate), name in zip(CASES, parts, strict=True):
        assert counts[name].value == len(expected(people, key, predicate)), name


def test_a_refresh_on_a_numeric_looking_attribute_keeps_exactly_its_holders(people):
    segment = SegmentFactory(rules=rule("2024", "not_exists", None))
    services.segment_refresh(segment=segment)
    members = set(
        SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    )
    assert members == expected(people, "2024", lambda v: v is MISSING or v is None)
    assert segment.member_count == len(members)


# Stored numbers beyond double precision ------------------------------------


def store_raw(properties_json: str) -> Profile:
    """A profile whose properties were written before the API checked
    numbers: raw SQL, because Python cannot even hold 1e400 as a float."""
    profile = ProfileFactory(properties={})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE profiles_profile SET properties = %s::jsonb WHERE id = %s",
            [properties_json, profile.pk],
        )
    return profile


@pytest.mark.parametrize("operator", ["gt", "lt"])
def test_a_refresh_skips_a_stored_number_beyond_double_precision(operator):
    huge = store_raw('{"score": 1e400}')
    negative = store_raw('{"score": -1e400}')
    tiny = store_raw('{"score": 1e-400}')
    high, low = ProfileFactory(properties={"score": 50}), ProfileFactory(properties={"score": 1})
    segment = SegmentFactory(rules=rule("score", operator, 10))

    count = services.segment_refresh(segment=segment)

    segment.refresh_from_db()
    assert segment.refresh_error == ""
    members = set(
        SegmentMembership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    )
    assert members == ({high.pk} if operator == "gt" else {low.pk, tiny.pk})
    assert count == len(members)
    assert huge.pk not in members and negative.pk not in members


def test_other_operators_do_not_fail_on_a_huge_stored_number():
    huge = store_raw('{"score": 1e400}')
    ProfileFactory(properties={"score": 5})
    assert set(rules_matching_profiles(rule("score", "exists", None)).values_list("id", flat=True))
    assert list(
        rules_matching_profiles(rule("score", "not_equals", 5)).values_list("id", flat=True)
    ) == [huge.pk]
