"""The segment form and its builder endpoints answer hostile rules JSON
with a 400 (or, while editing, the builder re-rendered) and a message that
says what is wrong; nothing is written, nothing answers 500."""

import json

import pytest

from segments import services
from segments.models import Segment
from tests.segments.factories import SegmentFactory
from tests.segments.test_views import TRIALS, form_data, rows


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "async_task", lambda *args: calls.append(args))
    return calls


@pytest.fixture
def catalogue(monkeypatch):
    """The pickers' lists, without reading the profiles table."""
    from segments import views
    from segments.catalogue import Attribute, Catalogue

    fixed = Catalogue(attributes=(Attribute("plan", "text"),), events=("purchase",))
    monkeypatch.setattr(views, "catalogue_get", lambda: fixed)
    return fixed


pytestmark = pytest.mark.django_db

CONDITION = '{"match": "all", "conditions": [{"type": "property", "field": "score", '
HOSTILE = [
    ("NaN", CONDITION + '"operator": "gt", "value": NaN}]}', "NaN, which is not a number"),
    (
        "Infinity",
        CONDITION + '"operator": "lt", "value": -Infinity}]}',
        "-Infinity, which is not a number",
    ),
    ("1e400", CONDITION + '"operator": "gt", "value": 1e400}]}', "too large to use (1e400)"),
    (
        "a 5000-digit integer",
        CONDITION + '"operator": "equals", "value": ' + "7" * 5000 + "}]}",
        "too large to use (5,000 digits)",
    ),
    (
        "a 400-digit integer",
        CONDITION + '"operator": "gt", "value": ' + "7" * 400 + "}]}",
        "too large to use (400 digits)",
    ),
    (
        "NUL in a value",
        CONDITION + '"operator": "equals", "value": "a\\u0000b"}]}',
        "cannot be saved",
    ),
    (
        "NUL in a key",
        '{"match": "all", "conditions": [], "\\u0000": 1}',
        "cannot be saved",
    ),
    (
        "a lone surrogate in the match",
        '{"match": "\\ud800", "conditions": []}',
        "cannot be saved",
    ),
    ("100,000 [", "[" * 100_000, "nested too deeply"),
    ("100,000 {", '{"a":' * 100_000, "nested too deeply"),
]
IDS = [case[0] for case in HOSTILE]


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in HOSTILE], ids=IDS)
def test_creating_a_segment_with_hostile_rules_json_is_refused_with_a_400(
    editor_client, enqueued, text, message
):
    response = editor_client.post("/segments/new/", form_data(rules=text))
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["rules"])
    html = response.content.decode()
    assert "Nothing was saved" in html and "\x00" not in html
    assert not Segment.objects.exists() and enqueued == []


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in HOSTILE], ids=IDS)
def test_editing_a_segment_with_hostile_rules_json_changes_nothing(
    editor_client, enqueued, text, message
):
    segment = SegmentFactory(name="Trials", rules=TRIALS)
    response = editor_client.post(f"/segments/{segment.pk}/edit/", form_data(rules=text))
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["rules"])
    segment.refresh_from_db()
    assert segment.rules == TRIALS and enqueued == []


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in HOSTILE], ids=IDS)
@pytest.mark.parametrize("endpoint", ["/segments/builder/", "/segments/builder/count/"])
def test_the_builder_endpoints_show_the_problem_instead_of_failing(
    editor_client, catalogue, endpoint, text, message
):
    data = {**rows({"kind": "attribute", "field": "plan", "operator": "exists"}), "rules": text}
    response = editor_client.post(endpoint, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "\x00" not in html
    if endpoint == "/segments/builder/":  # the count alone shows no JSON
        assert message in html
    assert not Segment.objects.exists()


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("rules_shown", 302),  # only tells whether the JSON was edited: the rows are saved
        ("match", 400),
        ("c0-field", 400),
        ("c0-value", 400),
        ("action", 200),  # not a known button: the builder comes back, unsaved
    ],
)
def test_hostile_values_in_the_builder_fields_are_refused_not_fatal(
    editor_client, enqueued, catalogue, field, status
):
    data = {
        "name": "X",
        **rows({"kind": "attribute", "field": "plan", "operator": "equals", "value": "a"}),
    }
    data[field] = "[" * 100_000 if field == "rules_shown" else "a\x00b"
    response = editor_client.post("/segments/new/", data)
    assert response.status_code == status
    assert Segment.objects.exists() == (status == 302)


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in HOSTILE], ids=IDS)
def test_the_admin_refuses_hostile_rules_json_with_a_message(
    client, admin_user, enqueued, text, message
):
    segment = SegmentFactory(name="Trials", rules=TRIALS)
    client.force_login(admin_user)
    rules = json.dumps(TRIALS)
    data = {"name": "Trials", "description": "", "rules": text, "initial-rules": rules}
    response = client.post(f"/admin/segments/segment/{segment.pk}/change/", data)
    assert response.status_code == 200  # Django admin re-renders a refused change with 200
    assert message in response.content.decode()
    segment.refresh_from_db()
    assert segment.rules == TRIALS and enqueued == []
