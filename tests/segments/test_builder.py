"""The builder's rows and rules: JSON -> rows -> JSON, row by row problems,
and the buttons that add, remove and move rows.

The round trip goes through the rendered page, as a browser would: the rows
are rendered to HTML, their fields are read back the way a form submits them,
and the builder turns them into rules again.
"""

from html.parser import HTMLParser

import pytest
from django.template.loader import render_to_string
from django.utils.datastructures import MultiValueDict

from segments.builder import builder_from_post, builder_from_rules, builder_tidy
from segments.catalogue import Attribute, Catalogue
from segments.management.commands.seed_demo import DEMO_SEGMENTS
from tests.segments.test_rules import (
    EVENT_CASES,
    INVALID,
    PROPERTY_CASES,
    SUBSCRIPTION_CASES,
)

pytestmark = pytest.mark.django_db

CATALOGUE = Catalogue(
    attributes=(Attribute("age", "number"), Attribute("plan", "text"), Attribute("vip", "boolean")),
    events=("purchase", "signed_in"),
    topics=("newsletter",),
)

NESTED = {
    "match": "all",
    "conditions": [
        {
            "match": "any",
            "conditions": [
                {"type": "property", "field": "country", "operator": "equals", "value": "FR"},
                {"type": "property", "field": "country", "operator": "equals", "value": "ES"},
            ],
        },
        {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
        {"type": "event", "event": "purchase", "operator": "not_done", "within_days": 30},
    ],
}
MORE = [
    ("nested groups", NESTED),
    (
        "any of, with odd values",
        {
            "match": "any",
            "conditions": [
                {"type": "property", "field": "age", "operator": "equals", "value": "34"},
                {"type": "property", "field": "score", "operator": "lt", "value": -0.5},
                {"type": "property", "field": "big", "operator": "gt", "value": 10**20},
                {"type": "property", "field": "tiny", "operator": "gt", "value": 1e-7},
                {"type": "property", "field": " spaced ", "operator": "equals", "value": " x "},
                {"type": "property", "field": "0", "operator": "equals", "value": ""},
                {"type": "property", "field": "vip", "operator": "not_equals", "value": False},
                {"type": "property", "field": "vip", "operator": "exists"},
                {"type": "property", "field": "note", "operator": "equals", "value": "2024-01-01"},
                {"type": "event", "operator": "at_most", "count": 0, "within_days": 36500},
                {"type": "subscription", "status": "unsubscribed", "topic": "news"},
            ],
        },
    ),
    *[(name, rules) for name, _description, rules in DEMO_SEGMENTS],
]
ROUND_TRIPS = [
    *[(case[0], case[1]) for case in PROPERTY_CASES + SUBSCRIPTION_CASES + EVENT_CASES],
    *MORE,
]


class FormFields(HTMLParser):
    """The fields a browser would submit from this HTML: inputs, the
    selected option of each select (else its first), textareas."""

    def __init__(self):
        super().__init__()
        self.data = MultiValueDict()
        self._select = None
        self._options = []
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.data.appendlist(attrs["name"], attrs.get("value") or "")
        elif tag == "select":
            self._select, self._options = attrs.get("name"), []
        elif tag == "option" and self._select:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea = attrs.get("name")
            self.data.appendlist(self._textarea, "")

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            chosen = [value for value, selected in self._options if selected]
            self.data.appendlist(self._select, (chosen or [self._options[0][0]])[0])
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data.setlistdefault(self._textarea)[-1] += data


def submitted(builder) -> MultiValueDict:
    html = render_to_string("segments/_builder.html", {"builder": builder, "oob": False})
    html += render_to_string("segments/_builder.html#json", {"builder": builder})
    fields = FormFields()
    fields.feed(html)
    # The JSON textarea is rendered twice above (out of band, and inline): keep one.
    for name in ("rules", "rules_shown"):
        fields.data.setlist(name, fields.data.getlist(name)[:1])
    return fields.data


@pytest.mark.parametrize(
    ("rules"), [case[1] for case in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS]
)
def test_every_rule_survives_json_to_rows_to_json_unchanged(rules):
    builder = builder_from_rules(rules, catalogue=CATALOGUE)
    assert builder.source == "rows" and builder.rows
    back = builder_from_post(submitted(builder), catalogue=CATALOGUE)
    assert back.source == "rows"
    assert back.is_valid, [row.errors for row in back.all_rows()]
    assert back.rules == rules
    assert [type(c.get("value")) for c in _flat(back.rules)] == [
        type(c.get("value")) for c in _flat(rules)
    ]


def _flat(rules):
    for node in rules["conditions"]:
        yield from node["conditions"] if "match" in node else [node]


def test_the_rows_survive_a_second_round_unchanged_too():
    once = builder_from_post(submitted(builder_from_rules(NESTED)), catalogue=CATALOGUE)
    twice = builder_from_post(submitted(once), catalogue=CATALOGUE)
    assert twice.rules == once.rules == NESTED


@pytest.mark.parametrize(
    "rules",
    [case[1] for case in INVALID if isinstance(case[1], dict)],
    ids=[case[0] for case in INVALID if isinstance(case[1], dict)],
)
def test_invalid_rules_open_as_json_with_their_problems(rules):
    builder = builder_from_rules(rules)
    assert builder.source == "json" and builder.rows == [] and builder.json_errors
    assert not builder.is_valid


def row_post(**fields):
    """A post with the rows given as {"c0-kind": ..., ...}, and the JSON the
    page showed for them."""
    data = {"match": "all", **{key.replace("_", "-", 1): value for key, value in fields.items()}}
    shown = builder_from_post({**data, "rules": "", "rules_shown": ""}).rows_json
    return {**data, "rules": shown, "rules_shown": shown}


def attribute(field, operator, value_type, value=""):
    return {
        "c0_kind": "attribute",
        "c0_field": field,
        "c0_operator": operator,
        "c0_value_type": value_type,
        "c0_value": value,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (attribute("", "equals", "text", "x"), "Choose or type the name of an attribute."),
        (attribute("age", "gt", "number", "thirty"), "Enter a number, like 30 or 2.5."),
        (attribute("age", "gt", "number", "nan"), "Enter a number"),
        (attribute("age", "gt", "number", "1_000"), "Enter a number"),
        (attribute("since", "gt", "date", "2024-02-30"), "Enter a date, like 2024-03-01."),
        (attribute("plan", "contains", "text", ""), "Type the text to look for."),
        (attribute("plan", "gt", "text", "x"), "does not apply to this type"),
        (attribute("plan", "equals", "text", "a\x00b"), "NUL"),
        (
            {
                "c0_kind": "event",
                "c0_event": "purchase",
                "c0_operator": "at_least",
                "c0_count": "0",
            },
            "Enter how many times: a whole number from 1",
        ),
        (
            {
                "c0_kind": "event",
                "c0_operator": "not_done",
                "c0_count": "",
                "c0_within_days": "-3",
            },
            "Enter a number of days from 1 to 36,500",
        ),
        ({"c0_kind": "subscription", "c0_status": "maybe"}, "Choose subscribed or unsubscribed."),
    ],
)
def test_a_bad_value_is_marked_on_its_row_with_the_reason(fields, message):
    builder = builder_from_post(row_post(**fields))
    assert not builder.is_valid
    assert any(message in error for error in builder.rows[0].errors), builder.rows[0].errors


def test_an_empty_builder_asks_for_a_condition():
    builder = builder_from_post({"match": "all", "rules": "", "rules_shown": ""})
    assert builder.errors == ["Add at least one condition."]


def test_an_empty_group_is_marked():
    builder = builder_from_post(row_post(c0_kind="group", c0_match="any"))
    assert "This group is empty" in builder.rows[0].errors[0]


def test_edited_json_replaces_the_rows():
    data = row_post(**attribute("plan", "equals", "text", "trial"))
    data["rules"] = (
        '{"match": "any", "conditions": [{"type": "subscription", "status": "subscribed"}]}'
    )
    builder = builder_from_post(data)
    assert builder.source == "json" and builder.is_valid
    assert builder.rules["conditions"] == [{"type": "subscription", "status": "subscribed"}]
    assert builder.rows[0].kind == "subscription"


def test_the_same_json_laid_out_differently_is_not_an_edit():
    data = row_post(**attribute("plan", "equals", "text", "trial"))
    data["rules"] = data["rules"].replace("\n", "\r\n").replace("  ", " ")
    assert builder_from_post(data).source == "rows"


def test_invalid_json_says_where_and_keeps_what_was_typed():
    data = row_post(**attribute("plan", "equals", "text", "trial"))
    data["rules"] = '{"match": "all",\n "conditions": [}'
    builder = builder_from_post(data)
    assert builder.json_errors == ["This is not valid JSON: line 2, column 17: expecting value."]
    assert builder.json_text == data["rules"] and not builder.is_valid
    assert builder.rows[0].values["field"] == "plan"


def test_json_with_not_a_number_is_refused():
    data = row_post(**attribute("plan", "equals", "text", "trial"))
    data["rules"] = (
        '{"match": "all", "conditions": '
        '[{"type": "property", "field": "a", "operator": "gt", "value": NaN}]}'
    )
    assert "NaN, which is not a number" in builder_from_post(data).json_errors[0]


def test_adding_rows_and_conditions_to_a_group():
    builder = builder_from_rules(NESTED)
    builder.apply("add:event")
    assert [row.kind for row in builder.rows][-1] == "event"
    assert builder.focus == "id_c3-kind"
    builder.apply("add:subscription:c0")
    assert [child.kind for child in builder.rows[0].children] == [
        "attribute",
        "attribute",
        "subscription",
    ]
    assert builder.focus == "id_c0-2-kind"
    builder.apply("add:group")
    assert builder.rows[-1].is_group and len(builder.rows[-1].children) == 1
    builder.apply("add:group:c0")  # groups nest one level only
    assert not any(child.is_group for child in builder.rows[0].children)


def test_removing_and_moving_rows():
    builder = builder_from_rules(NESTED)
    builder.apply("down:c0")
    assert [row.kind for row in builder.rows] == ["attribute", "group", "event"]
    assert builder.focus == "c1-down"
    builder.apply("up:c1-1")
    assert [c.values["value"] for c in builder.rows[1].children] == ["ES", "FR"]
    assert builder.focus == "c1-0-down"  # at the top now: its "up" is disabled
    builder.apply("remove:c0")
    assert [row.kind for row in builder.rows] == ["group", "event"]
    assert builder.focus == "id_c0-match"
    builder.apply("remove:c0-0").apply("remove:c0-0")
    assert builder.rows[0].children == [] and builder.focus == "c0-add"
    builder.apply("remove:c9")  # gone already: nothing happens
    assert len(builder.rows) == 2


def test_changing_the_kind_of_a_row_starts_it_afresh():
    data = row_post(**attribute("plan", "equals", "text", "trial"))
    data["c0-kind"] = "event"
    builder = builder_tidy(builder_from_post(data))
    assert builder.rows[0].kind == "event"
    assert builder.rows[0].values == {
        "event": "",
        "operator": "at_least",
        "count": "1",
        "within_days": "",
    }


def test_choosing_another_attribute_offers_the_operators_of_its_type():
    data = row_post(**attribute("plan", "contains", "text", "tri"))
    data["c0-field"], data["c0-field_was"] = "age", "plan"
    row = builder_tidy(builder_from_post(data, catalogue=CATALOGUE)).rows[0]
    assert row.values["value_type"] == "number"
    assert row.values["operator"] == "equals"
    assert ("gt", "is more than") in row.operators


def test_rows_posted_out_of_order_or_malformed_are_read_in_order():
    data = {
        "match": "any",
        "c10-kind": "subscription",
        "c10-status": "unsubscribed",
        "c2-kind": "event",
        "c2-operator": "not_done",
        "c3-kind": "nonsense",
        "c2-0-kind": "attribute",  # a child of a row that is not a group
        "c999-kind": "event",  # out of range: ignored
        "rules": "",
        "rules_shown": "",
    }
    builder = builder_from_post(data)
    assert [row.kind for row in builder.rows] == ["event", "subscription"]
    assert builder.rules == {
        "match": "any",
        "conditions": [
            {"type": "event", "operator": "not_done"},
            {"type": "subscription", "status": "unsubscribed"},
        ],
    }
