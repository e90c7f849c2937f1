import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles.models import Profile
from segments import services
from segments.models import DeletionJob, Segment, SegmentMembership
from tests.messaging.factories import CampaignFactory
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def enqueued(monkeypatch):
    """Tasks enqueued on commit, instead of sending them to the broker."""
    calls = []
    monkeypatch.setattr(services, "async_task", lambda *args: calls.append(args))
    return calls


@pytest.fixture
def committing(django_capture_on_commit_callbacks):
    """Run a request's on-commit callbacks, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def anonymous():
    return Client()


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run enqueued tasks at once, in the request, as Q_CLUSTER["sync"] does."""
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)


def form_data(name="Trials", description="On the trial plan", rules=TRIALS):
    return {
        "name": name,
        "description": description,
        "rules": rules if isinstance(rules, str) else json.dumps(rules),
    }


# List ----------------------------------------------------------------------


def test_the_list_shows_count_and_last_refresh_with_the_exact_time_on_hover(viewer_client):
    refreshed = timezone.now() - timedelta(minutes=3)
    SegmentFactory(name="Trial users in Germany", member_count=1234, last_refreshed_at=refreshed)
    html = viewer_client.get("/segments/").content.decode()
    assert "Trial users in Germany" in html and "1,234" in html
    assert "3\xa0minutes ago" in html
    assert f'title="{refreshed:%Y-%m-%d %H:%M:%S} UTC"' in html


def test_the_list_searches_by_name(viewer_client):
    SegmentFactory(name="Trial users")
    SegmentFactory(name="Repeat buyers")
    html = viewer_client.get("/segments/", {"q": "TRIAL"}).content.decode()
    assert "Trial users" in html and "Repeat buyers" not in html


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("name", ["Alpha", "Beta", "Gamma"]),
        ("-name", ["Gamma", "Beta", "Alpha"]),
        ("count", ["Beta", "Alpha", "Gamma"]),
        ("-count", ["Alpha", "Beta", "Gamma"]),
        ("refreshed", ["Alpha", "Beta", "Gamma"]),
        ("-refreshed", ["Beta", "Alpha", "Gamma"]),
    ],
)
def test_the_list_sorts_and_puts_never_refreshed_segments_last(viewer_client, sort, order):
    now = timezone.now()
    SegmentFactory(name="Alpha", member_count=30, last_refreshed_at=now - timedelta(days=2))
    SegmentFactory(name="Beta", member_count=10, last_refreshed_at=now)
    SegmentFactory(name="Gamma", member_count=None, last_refreshed_at=None)
    response = viewer_client.get("/segments/", {"sort": sort})
    assert [s.name for s in response.context["page"]] == order


def test_the_sorted_column_says_so_to_screen_readers(viewer_client):
    SegmentFactory()
    html = viewer_client.get("/segments/", {"sort": "-count"}).content.decode()
    assert 'aria-sort="descending"' in html
    assert "?sort=count" in html  # clicking again reverses


def test_editors_get_a_new_segment_button(editor_client):
    assert b"/segments/new/" in editor_client.get("/segments/").content


def test_viewers_get_no_new_segment_button(viewer_client):
    assert b"/segments/new/" not in viewer_client.get("/segments/").content


def test_an_unknown_sort_is_refused_with_its_reason(viewer_client):
    response = viewer_client.get("/segments/", {"sort": "nonsense"})
    assert response.status_code == 400
    assert "“sort” must be one of name, -name, count" in response.content.decode()


def test_the_list_requires_view_access(outsider_client, anonymous):
    assert outsider_client.get("/segments/").status_code == 403
    assert anonymous.get("/segments/").status_code == 302


def test_the_list_refuses_post(viewer_client):
    assert viewer_client.post("/segments/").status_code == 405


# Detail --------------------------------------------------------------------


def test_the_segment_page_shows_everything_needed_to_review_it(viewer_client):
    segment = SegmentFactory(
        name="Trials",
        description="On the trial plan",
        rules=TRIALS,
        member_count=1,
        last_refreshed_at=timezone.now() - timedelta(minutes=5),
    )
    profile = ProfileFactory(email="ada@example.com", user_id="u-ada")
    last_event = timezone.now() - timedelta(days=2)
    EventFactory(profile=profile, occurred_at=last_event)
    SegmentMembershipFactory(segment=segment, profile=profile)
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    for text in (
        "Trials",
        "On the trial plan",
        "Attribute “plan” is “trial”",
        'data-testid="member-count">1<',
        "5\xa0minutes ago",
        "ada@example.com",
        "u-ada",
        f"{last_event:%-d %b %Y, %H:%M} UTC",  # the last event, in the one date format
    ):
        assert text in html, text


def test_the_actions_menu_is_an_accessible_menu_button(editor_client):
    segment = SegmentFactory()
    html = editor_client.get(f"/segments/{segment.pk}/").content.decode()
    button = re.search(r"<button[^>]*menu-button[^>]*>", html).group(0)
    for attribute in (
        'aria-label="Segment actions"',
        'aria-haspopup="menu"',
        'aria-expanded="false"',
        'aria-controls="segment-actions"',
    ):
        assert attribute in button
    menu = html[html.index('<ul role="menu"') : html.index("</ul>", html.index('role="menu"'))]
    assert ">Edit</a>" in menu and ">Refresh</button>" in menu and "Delete Profiles..." in menu


def test_viewers_see_no_write_actions(viewer_client):
    segment = SegmentFactory()
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    assert f"/segments/{segment.pk}/edit/" not in html
    assert f"/segments/{segment.pk}/refresh/" not in html
    assert 'aria-disabled="true"' in html  # the deletion item, disabled with its reason


def test_members_are_paged_by_profile_id_without_counting_the_membership(viewer_client):
    segment = SegmentFactory(member_count=51)
    for profile in ProfileFactory.create_batch(51):
        SegmentMembershipFactory(segment=segment, profile=profile)
    with CaptureQueriesContext(connection) as queries:
        first = viewer_client.get(f"/segments/{segment.pk}/")
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    first_ids = [m.profile_id for m in first.context["members"]]
    assert len(first_ids) == 50 and first_ids == sorted(first_ids)
    second = viewer_client.get(f"/segments/{segment.pk}/?{first.context['members'].next_query()}")
    assert [m.profile_id for m in second.context["members"]] == [
        max(SegmentMembership.objects.values_list("profile_id", flat=True))
    ]


def test_the_member_search_finds_a_member_by_email_or_user_id(viewer_client):
    segment = SegmentFactory()
    ada = ProfileFactory(email="ada@example.com", user_id="u-ada")
    bea = ProfileFactory(email="bea@example.com", user_id="u-bea")
    for profile in (ada, bea):
        SegmentMembershipFactory(segment=segment, profile=profile)
    by_email = viewer_client.get(f"/segments/{segment.pk}/", {"q": "ADA@"})
    assert [m.profile for m in by_email.context["members"]] == [ada]
    by_user_id = viewer_client.get(f"/segments/{segment.pk}/", {"q": "u-bea"})
    assert [m.profile for m in by_user_id.context["members"]] == [bea]


def test_the_member_search_names_an_exact_match_above_the_other_matches(viewer_client):
    segment = SegmentFactory()
    exact = ProfileFactory(email="someone@example.com", user_id="ada")
    contains = ProfileFactory(email="ada@example.com", user_id="u-2")
    for profile in (exact, contains):
        SegmentMembershipFactory(segment=segment, profile=profile)
    response = viewer_client.get(f"/segments/{segment.pk}/", {"q": "ada"})
    assert [m.profile for m in response.context["members"]] == [exact, contains]
    html = response.content.decode()
    assert re.search(
        rf'data-testid="exact-match">Exact match: <a href="/profiles/{exact.pk}/">'
        r"someone@example.com</a> \(user id ada\): in this segment.",
        html,
    )


def test_the_member_search_finds_any_part_of_an_email_user_id_or_attribute_value(viewer_client):
    segment = SegmentFactory()
    ada = ProfileFactory(email="ada.lovelace@example.com", user_id="crm-1815")
    grace = ProfileFactory(email="gh@example.org", properties={"last_name": "Hopper"})
    outsider = ProfileFactory(email="lovelace.fan@example.net", properties={"last_name": "Hopper"})
    for profile in (ada, grace):
        SegmentMembershipFactory(segment=segment, profile=profile)

    def members(query):
        response = viewer_client.get(f"/segments/{segment.pk}/", {"q": query})
        return [m.profile for m in response.context["members"]]

    assert members("LOVELACE") == [ada]
    assert members("m-181") == [ada]
    assert members("hopp") == [grace]
    assert outsider not in members("example")


def test_the_members_pager_says_where_you_are_with_the_segments_count(viewer_client):
    segment = SegmentFactory(member_count=51, last_refreshed_at=timezone.now())
    for profile in ProfileFactory.create_batch(51):
        SegmentMembershipFactory(segment=segment, profile=profile)
    first = viewer_client.get(f"/segments/{segment.pk}/")
    assert "Members 1\N{EN DASH}50 of 51 · page 1 of 2" in first.content.decode()
    second = viewer_client.get(f"/segments/{segment.pk}/?{first.context['members'].next_query()}")
    html = second.content.decode()
    assert "Members 51\N{EN DASH}51 of 51 · page 2 of 2" in html and 'rel="prev"' in html


def test_a_member_search_counts_its_matches_and_pages_through_them(viewer_client):
    segment = SegmentFactory(member_count=60)
    for profile in ProfileFactory.create_batch(55, properties={"plan": "growth"}):
        SegmentMembershipFactory(segment=segment, profile=profile)
    for profile in ProfileFactory.create_batch(5):
        SegmentMembershipFactory(segment=segment, profile=profile)
    first = viewer_client.get(f"/segments/{segment.pk}/", {"q": "growth"})
    assert "Members 1\N{EN DASH}50 of 55" in first.content.decode()
    second = viewer_client.get(f"/segments/{segment.pk}/?{first.context['members'].next_query()}")
    ids = [m.profile_id for m in first.context["members"]] + [
        m.profile_id for m in second.context["members"]
    ]
    assert len(ids) == len(set(ids)) == 55


def test_a_short_member_search_says_it_finds_only_an_exact_user_id_or_email(viewer_client):
    segment = SegmentFactory()
    ab = ProfileFactory(email="ab@example.com", user_id="ab")
    for profile in (ab, ProfileFactory(email="abe@example.com")):
        SegmentMembershipFactory(segment=segment, profile=profile)
    response = viewer_client.get(f"/segments/{segment.pk}/", {"q": "ab"})
    assert [m.profile for m in response.context["members"]] == [ab]
    assert "too short to search inside" in response.content.decode()


def test_an_exact_match_outside_the_segment_is_named_as_such(viewer_client):
    segment = SegmentFactory(last_refreshed_at=timezone.now())
    SegmentMembershipFactory(segment=segment, profile__email="leeann@example.com")
    lee = ProfileFactory(email="lee@example.com", user_id="lee")
    html = viewer_client.get(f"/segments/{segment.pk}/", {"q": "lee"}).content.decode()
    assert "leeann@example.com" in html
    assert (
        f'Exact match: <a href="/profiles/{lee.pk}/">lee@example.com</a> (user id lee): '
        "not in this segment as of its last refresh." in html
    )


@pytest.mark.parametrize(
    "query, message",
    [
        ("x" * 256, "The search is too long: at most 255 characters."),
        ("ada\x00", "The search contains a character that is not valid text."),
    ],
)
def test_a_bad_member_search_is_refused_with_a_message(viewer_client, query, message):
    segment = SegmentFactory()
    SegmentMembershipFactory(segment=segment, profile__email="ada@example.com")
    for headers in ({}, {**HTMX, "HTTP_HX_TARGET": "members"}):
        response = viewer_client.get(f"/segments/{segment.pk}/", {"q": query}, **headers)
        assert response.status_code == 400
        html = response.content.decode()
        assert f'role="alert" id="member-q-error">{message}</p>' in html
        assert "ada@example.com" not in html


def test_the_member_search_ignores_the_case_of_email_addresses(viewer_client):
    segment = SegmentFactory()
    ada = ProfileFactory(email="Ada.Lovelace@Example.com")
    SegmentMembershipFactory(segment=segment, profile=ada)
    response = viewer_client.get(f"/segments/{segment.pk}/", {"q": "ada.lovelace@example.com"})
    assert [m.profile for m in response.context["members"]] == [ada]


def test_the_member_search_says_when_a_person_exists_but_is_not_in_the_segment(viewer_client):
    segment = SegmentFactory()
    SegmentMembershipFactory(segment=segment)
    outsider = ProfileFactory(email="zoe@example.com")
    response = viewer_client.get(f"/segments/{segment.pk}/", {"q": "zoe@example.com"})
    html = response.content.decode()
    assert list(response.context["members"]) == []
    assert "No member matches “zoe@example.com”" in html
    assert f'href="/profiles/{outsider.pk}/"' in html and "not in this segment" in html


def test_an_htmx_member_search_returns_only_the_members_table(viewer_client):
    segment = SegmentFactory()
    SegmentMembershipFactory(segment=segment, profile__email="ada@example.com")
    response = viewer_client.get(
        f"/segments/{segment.pk}/", {"q": "ada"}, **HTMX, HTTP_HX_TARGET="members"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="members"')
    assert "ada@example.com" in html and "<html" not in html


def test_a_refreshing_segment_says_so_and_polls(viewer_client):
    segment = SegmentFactory(refresh_requested_at=timezone.now())
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "Refreshing…" in html
    assert f'hx-get="/segments/{segment.pk}/refresh/status/"' in html


def test_a_failed_refresh_is_shown(viewer_client):
    segment = SegmentFactory(refresh_error="The rules are not valid: Rules: the group is empty.")
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "The last refresh failed" in html and "group is empty" in html
    assert "Refreshing…" not in html


def test_user_supplied_text_on_the_segment_page_is_escaped(viewer_client):
    script = "<script>alert(1)</script>"
    segment = SegmentFactory(
        description=script,
        rules={
            "match": "all",
            "conditions": [
                {"type": "property", "field": script, "operator": "equals", "value": script}
            ],
        },
    )
    SegmentMembershipFactory(segment=segment, profile__user_id=script)
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    assert script not in html and "&lt;script&gt;" in html


def test_a_bad_member_page_cursor_is_refused_with_its_reason(viewer_client):
    segment = SegmentFactory()
    SegmentMembershipFactory(segment=segment)
    response = viewer_client.get(f"/segments/{segment.pk}/", {"after": "x'; drop"})
    assert response.status_code == 400
    assert "“after” must be a whole number" in response.content.decode()


def test_an_unknown_segment_is_404(viewer_client):
    assert viewer_client.get("/segments/999999/").status_code == 404


def test_the_segment_page_requires_view_access(outsider_client, anonymous):
    segment = SegmentFactory()
    assert outsider_client.get(f"/segments/{segment.pk}/").status_code == 403
    assert anonymous.get(f"/segments/{segment.pk}/").status_code == 302


def test_the_segment_page_refuses_post(viewer_client):
    assert viewer_client.post(f"/segments/{SegmentFactory().pk}/").status_code == 405


# Create --------------------------------------------------------------------


def test_an_editor_creates_a_segment_and_its_count_is_requested(
    editor_client, alice, enqueued, committing
):
    assert editor_client.get("/segments/new/").status_code == 200
    with committing():
        response = editor_client.post("/segments/new/", form_data())
    segment = Segment.objects.get(name="Trials")
    assert response.status_code == 302 and response["Location"] == f"/segments/{segment.pk}/"
    assert segment.rules == TRIALS and segment.created_by == alice
    assert segment.is_refreshing
    assert enqueued == [("segments.tasks.refresh_segment", segment.pk)]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("{not json", "This is not valid JSON"),
        ({"match": "all", "conditions": []}, "Rules: the group is empty"),
        (
            {
                "match": "all",
                "conditions": [{"type": "property", "field": "plan", "operator": "is"}],
            },
            "Condition 1: unknown operator “is”",
        ),
        (
            {
                "match": "all",
                "conditions": [
                    {"type": "event", "event": "purchase", "operator": "at_least", "count": "3"}
                ],
            },
            "needs a whole number “count”",
        ),
        ("", "This field is required."),
    ],
)
def test_invalid_rules_are_refused_next_to_the_field_and_nothing_is_saved(
    editor_client, enqueued, rules, message
):
    response = editor_client.post("/segments/new/", form_data(rules=rules))
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["rules"])
    html = response.content.decode()
    errors = html[html.index('data-testid="rules-errors"') :]
    assert message.replace("“", "&ldquo;")[:10] in errors or message[:10] in errors
    assert "Nothing was saved" in html
    assert not Segment.objects.exists() and enqueued == []


def test_the_form_keeps_what_was_typed_after_an_error(editor_client):
    response = editor_client.post("/segments/new/", form_data(rules="{not json"))
    assert "{not json" in response.content.decode()


def test_a_segment_name_must_be_unique(editor_client, enqueued):
    SegmentFactory(name="Trials")
    response = editor_client.post("/segments/new/", form_data(name="trials"))
    assert "Another segment already has this name." in response.context["form"].errors["name"]
    assert Segment.objects.count() == 1


def test_creating_requires_edit_access(viewer_client, anonymous):
    assert viewer_client.get("/segments/new/").status_code == 403
    assert viewer_client.post("/segments/new/", form_data()).status_code == 403
    assert anonymous.post("/segments/new/", form_data()).status_code == 302
    assert not Segment.objects.exists()


def test_creating_refuses_put(editor_client):
    assert editor_client.put("/segments/new/").status_code == 405


# Edit ----------------------------------------------------------------------


def test_an_editor_sees_the_rules_and_saves_new_ones(editor_client, enqueued, committing):
    segment = SegmentFactory(name="Trials", rules=TRIALS)
    page = editor_client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert "&quot;plan&quot;" in page and 'value="Trials"' in page
    new_rules = {"match": "all", "conditions": [{"type": "subscription", "status": "unsubscribed"}]}
    with committing():
        response = editor_client.post(
            f"/segments/{segment.pk}/edit/", form_data(name="Lapsed", rules=new_rules)
        )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert segment.name == "Lapsed" and segment.rules == new_rules and segment.is_refreshing
    assert enqueued == [("segments.tasks.refresh_segment", segment.pk)]


def test_editing_with_invalid_rules_saves_nothing(editor_client, enqueued):
    segment = SegmentFactory(name="Trials", rules=TRIALS)
    response = editor_client.post(
        f"/segments/{segment.pk}/edit/",
        form_data(name="Renamed", rules={"match": "all", "conditions": [{"type": "x"}]}),
    )
    assert response.status_code == 400
    assert "unknown condition type" in " ".join(response.context["form"].errors["rules"])
    segment.refresh_from_db()
    assert segment.name == "Trials" and segment.rules == TRIALS and enqueued == []


def test_editing_keeps_the_name_of_the_segment_itself(editor_client, enqueued):
    segment = SegmentFactory(name="Trials", rules=TRIALS)
    response = editor_client.post(f"/segments/{segment.pk}/edit/", form_data(name="Trials"))
    assert response.status_code == 302


def test_editing_requires_edit_access(viewer_client, anonymous):
    segment = SegmentFactory(name="Trials")
    assert viewer_client.get(f"/segments/{segment.pk}/edit/").status_code == 403
    assert viewer_client.post(f"/segments/{segment.pk}/edit/", form_data("X")).status_code == 403
    assert anonymous.post(f"/segments/{segment.pk}/edit/", form_data("X")).status_code == 302
    assert Segment.objects.get(pk=segment.pk).name == "Trials"


def test_editing_an_unknown_segment_is_404(editor_client):
    assert editor_client.get("/segments/999999/edit/").status_code == 404


def test_editing_refuses_delete(editor_client):
    assert editor_client.delete(f"/segments/{SegmentFactory().pk}/edit/").status_code == 405


# Delete the definition -----------------------------------------------------


def test_an_editor_deletes_a_segment_and_its_profiles_stay(editor_client):
    segment = SegmentFactory(name="Trials", member_count=1)
    membership = SegmentMembershipFactory(segment=segment)
    CampaignFactory(name="Launch", audience=segment)
    page = editor_client.get(f"/segments/{segment.pk}/delete/").content.decode()
    assert "are <strong>not</strong> deleted" in page and "Launch" in page
    response = editor_client.post(f"/segments/{segment.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/segments/"
    assert not Segment.objects.filter(pk=segment.pk).exists()
    assert Profile.objects.filter(pk=membership.profile_id).exists()


def test_a_segment_whose_profiles_are_being_deleted_is_kept(editor_client):
    segment = SegmentFactory()
    DeletionJob.objects.create(segment=segment, segment_name=segment.name)
    response = editor_client.post(f"/segments/{segment.pk}/delete/")
    assert response.status_code == 409
    assert "being deleted" in response.content.decode()
    assert Segment.objects.filter(pk=segment.pk).exists()


def test_deleting_requires_delete_access(viewer_client, anonymous):
    segment = SegmentFactory()
    assert viewer_client.get(f"/segments/{segment.pk}/delete/").status_code == 403
    assert viewer_client.post(f"/segments/{segment.pk}/delete/").status_code == 403
    assert anonymous.post(f"/segments/{segment.pk}/delete/").status_code == 302
    assert Segment.objects.filter(pk=segment.pk).exists()


def test_deleting_an_unknown_segment_is_404(editor_client):
    assert editor_client.post("/segments/999999/delete/").status_code == 404


def test_deleting_refuses_put(editor_client):
    assert editor_client.put(f"/segments/{SegmentFactory().pk}/delete/").status_code == 405


# Refresh -------------------------------------------------------------------


def test_refresh_shows_refreshing_and_enqueues_the_task(editor_client, enqueued, committing):
    segment = SegmentFactory()
    with committing():
        response = editor_client.post(f"/segments/{segment.pk}/refresh/", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="refresh-status"')
    assert "Refreshing…" in html and 'hx-trigger="every 2s"' in html
    assert "HX-Trigger" not in response
    assert enqueued == [("segments.tasks.refresh_segment", segment.pk)]


@pytest.mark.django_db(transaction=True)
def test_a_refresh_that_finishes_at_once_shows_the_new_count(editor_client, sync_tasks):
    """With Q_CLUSTER["sync"] (or a fast worker) the task has run by the time
    the view renders: the request commits, and on commit the task runs."""
    segment = SegmentFactory(rules=TRIALS, member_count=None, last_refreshed_at=None)
    ProfileFactory(properties={"plan": "trial"})
    response = editor_client.post(f"/segments/{segment.pk}/refresh/", **HTMX)
    html = response.content.decode()
    assert 'data-testid="member-count">1<' in html and "Refreshing…" not in html
    assert response["HX-Trigger"] == "segment-refreshed"


def test_refresh_without_htmx_redirects_to_the_segment(editor_client, enqueued):
    segment = SegmentFactory()
    response = editor_client.post(f"/segments/{segment.pk}/refresh/")
    assert response.status_code == 302 and response["Location"] == f"/segments/{segment.pk}/"


def test_refresh_requires_edit_access(viewer_client, anonymous, enqueued):
    segment = SegmentFactory()
    assert viewer_client.post(f"/segments/{segment.pk}/refresh/", **HTMX).status_code == 403
    assert anonymous.post(f"/segments/{segment.pk}/refresh/").status_code == 302
    assert not Segment.objects.get(pk=segment.pk).is_refreshing and enqueued == []


def test_refreshing_an_unknown_segment_is_404(editor_client):
    assert editor_client.post("/segments/999999/refresh/").status_code == 404


def test_refresh_refuses_get(editor_client):
    assert editor_client.get(f"/segments/{SegmentFactory().pk}/refresh/").status_code == 405


def test_a_poll_changes_nothing_while_the_refresh_runs(viewer_client):
    segment = SegmentFactory(refresh_requested_at=timezone.now())
    response = viewer_client.get(f"/segments/{segment.pk}/refresh/status/", **HTMX)
    assert response.status_code == 204 and "HX-Trigger" not in response


def test_the_status_without_htmx_shows_the_refresh_state(viewer_client):
    segment = SegmentFactory(refresh_requested_at=timezone.now())
    response = viewer_client.get(f"/segments/{segment.pk}/refresh/status/")
    assert "Refreshing…" in response.content.decode()


def test_the_status_stops_polling_and_tells_the_page_when_done(viewer_client):
    segment = SegmentFactory(member_count=42)
    response = viewer_client.get(f"/segments/{segment.pk}/refresh/status/", **HTMX)
    html = response.content.decode()
    assert 'data-testid="member-count">42<' in html and "hx-trigger" not in html
    assert response["HX-Trigger"] == "segment-refreshed"


def test_the_status_requires_view_access(outsider_client, anonymous):
    segment = SegmentFactory()
    assert outsider_client.get(f"/segments/{segment.pk}/refresh/status/").status_code == 403
    assert anonymous.get(f"/segments/{segment.pk}/refresh/status/").status_code == 302


def test_the_status_of_an_unknown_segment_is_404(viewer_client):
    assert viewer_client.get("/segments/999999/refresh/status/").status_code == 404


def test_the_status_refuses_post(viewer_client):
    assert viewer_client.post(f"/segments/{SegmentFactory().pk}/refresh/status/").status_code == 405


def test_rule_errors_are_tied_to_the_rules_field(editor_client):
    response = editor_client.post("/segments/new/", form_data(rules={"match": "x"}))
    html = response.content.decode()
    textarea = re.search(r"<textarea[^>]*name=\"rules\"[^>]*>", html).group(0)
    assert 'aria-invalid="true"' in textarea
    assert 'aria-describedby="rules-help id_rules_errors"' in textarea
    assert 'id="id_rules_errors"' in html


# Builder -------------------------------------------------------------------


def rows(*conditions, match="all"):
    """The builder's fields for these rows, as the page posts them, and the
    JSON it showed for them (so the JSON counts as not edited)."""
    from segments.builder import builder_from_post

    data = {"match": match}
    for i, condition in enumerate(conditions):
        data.update({f"c{i}-{key}": value for key, value in condition.items()})
    shown = builder_from_post({**data, "rules": "", "rules_shown": ""}).rows_json
    return {**data, "rules": shown, "rules_shown": shown}


PLAN_TRIAL = {
    "kind": "attribute",
    "field": "plan",
    "operator": "equals",
    "value_type": "text",
    "value": "trial",
}
NO_PURCHASE = {"kind": "event", "event": "purchase", "operator": "not_done", "within_days": "30"}


@pytest.fixture
def catalogue(monkeypatch):
    """The pickers' lists, without reading (and locking) the profiles table."""
    from segments import views
    from segments.catalogue import Attribute, Catalogue

    fixed = Catalogue(attributes=(Attribute("plan", "text"),), events=("purchase",))
    monkeypatch.setattr(views, "catalogue_get", lambda: fixed)
    return fixed


@pytest.fixture
def trial_people():
    ProfileFactory(email="ada@example.com", user_id="u-ada", properties={"plan": "trial"})
    bea = ProfileFactory(email="bea@example.com", user_id="u-bea", properties={"plan": "trial"})
    ProfileFactory(email="cy@example.com", user_id="u-cy", properties={"plan": "pro"})
    EventFactory(profile=bea, name="purchase")


def test_the_builder_counts_each_row_and_the_whole_with_a_sample(editor_client, trial_people):
    response = editor_client.post("/segments/builder/count/", rows(PLAN_TRIAL, NO_PURCHASE), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="c0-count"[^>]*>2 people<', html)
    assert re.search(r'id="c1-count"[^>]*>2 people<', html)
    assert re.search(r'id="builder-status"[^>]*>1 person matches these rules.<', html)
    sample = html[html.index('data-testid="builder-sample"') :]
    assert "ada@example.com" in sample and "u-ada" in sample and "<td>trial</td>" in sample
    assert "bea@example.com" not in sample and "cy@example.com" not in sample
    assert (
        "Attribute “plan” is “trial”" in html
        and "Did not do “purchase” in the last 30 days" in html
    )
    assert "no-store" in response["Cache-Control"]


def test_the_builder_reshapes_the_rows_when_one_is_added(editor_client, catalogue):
    response = editor_client.post(
        "/segments/builder/", {**rows(PLAN_TRIAL), "action": "add:event"}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="c1-kind" value="event"' in html and 'data-focus-id="id_c1-kind"' in html
    assert 'id="builder-status" hx-swap-oob="innerHTML"' in html


def test_a_bad_value_is_marked_on_its_row_and_not_counted(editor_client, trial_people):
    bad = {**NO_PURCHASE, "within_days": "soon"}
    html = editor_client.post(
        "/segments/builder/count/", rows(PLAN_TRIAL, bad), **HTMX
    ).content.decode()
    errors = re.search(r'<div id="c1-errors"[^>]*>(.*?)</div>', html, re.S)[1]
    assert "Enter a number of days from 1 to 36,500" in errors
    assert re.search(r'id="c1-count"[^>]*><', html)
    assert re.search(r'id="c0-count"[^>]*>2 people<', html)
    assert "Fix the marked conditions to see how many people match." in html
    assert "builder-sample" not in html


def test_the_builder_is_for_editors_only(viewer_client, outsider_client, anonymous, trial_people):
    for url in ("/segments/builder/", "/segments/builder/count/"):
        assert anonymous.post(url, rows(PLAN_TRIAL))["Location"].startswith("/accounts/login/")
        assert viewer_client.post(url, rows(PLAN_TRIAL)).status_code == 403
        assert outsider_client.post(url, rows(PLAN_TRIAL)).status_code == 403


def test_the_builder_refuses_get(editor_client):
    assert editor_client.get("/segments/builder/").status_code == 405
    assert editor_client.get("/segments/builder/count/", {"c0-value": "x"}).status_code == 405


def test_the_builder_survives_nonsense(editor_client, catalogue):
    data = {
        "match": "some",
        "c0-kind": "event",
        "c0-count": "9" * 50,
        "rules": "[",
        "rules_shown": "",
    }
    for url in ("/segments/builder/", "/segments/builder/count/"):
        response = editor_client.post(url, data, **HTMX)
        assert response.status_code == 200
        assert "This is not valid JSON: line 1, column 2" in response.content.decode()


def test_a_count_that_hits_its_timeout_says_so_and_frees_the_connection(
    editor_client, catalogue, monkeypatch
):
    """Another transaction holds the profiles table: the count waits for its
    lock until the statement timeout, then the estimate does, and the page
    says the count is not known, promptly, with the connection still usable."""
    import time

    import psycopg

    from segments import counting

    monkeypatch.setattr(counting, "EXACT_TIMEOUT_MS", 100)
    monkeypatch.setattr(counting, "ESTIMATE_TIMEOUT_MS", 100)
    settings = connection.get_connection_params()
    with psycopg.connect(**settings) as other:
        other.execute("SET lock_timeout = '5s'")
        other.execute("LOCK TABLE profiles_profile IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = editor_client.post("/segments/builder/count/", rows(PLAN_TRIAL), **HTMX)
        elapsed = time.monotonic() - started
        other.rollback()
    html = response.content.decode()
    assert response.status_code == 200 and elapsed < 3
    assert "Counting took too long: the segment is counted exactly when you save it." in html
    assert re.search(r'id="c0-count"[^>]*>an unknown number of people<', html)
    assert "builder-sample" not in html
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone()[0] == "0"


def test_the_form_saves_from_the_rows_alone(editor_client, enqueued, committing, catalogue):
    data = {"name": "Lapsed trials", "description": "", **rows(PLAN_TRIAL, NO_PURCHASE)}
    with committing():
        response = editor_client.post("/segments/new/", {**data, "action": "save"})
    segment = Segment.objects.get(name="Lapsed trials")
    assert response.status_code == 302
    assert segment.rules == {
        "match": "all",
        "conditions": [
            {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
            {"type": "event", "event": "purchase", "operator": "not_done", "within_days": 30},
        ],
    }


def test_without_javascript_the_row_buttons_post_the_form_and_save_nothing(
    editor_client, enqueued, trial_people
):
    data = {"name": "Draft", "description": "typed", **rows(PLAN_TRIAL), "action": "add:group"}
    response = editor_client.post("/segments/new/", data)
    html = response.content.decode()
    assert response.status_code == 200 and not Segment.objects.exists()
    assert 'name="c1-kind" value="group"' in html and 'name="c1-0-kind" value="group"' not in html
    assert 'value="Draft"' in html and "typed" in html
    assert "Nothing was saved" not in html
    assert re.search(r'id="c0-count"[^>]*>2 people<', html)  # counted, no script needed


def test_a_bad_row_is_marked_and_nothing_is_saved(editor_client, enqueued, catalogue):
    bad = {**PLAN_TRIAL, "value_type": "number", "operator": "gt", "value": "lots"}
    response = editor_client.post("/segments/new/", {"name": "X", **rows(bad), "action": "save"})
    html = response.content.decode()
    assert response.status_code == 400 and not Segment.objects.exists()
    assert "Nothing was saved" in html and "Some conditions need fixing" in html
    assert re.search(r'id="row-c0"[^>]*class|class="row invalid"', html)
    assert "Enter a number, like 30 or 2.5." in html


def test_edited_json_is_what_gets_saved(editor_client, enqueued, catalogue):
    data = {"name": "Pasted", **rows(PLAN_TRIAL), "action": "save"}
    data["rules"] = json.dumps(TRIALS | {"match": "any"})
    editor_client.post("/segments/new/", data)
    assert Segment.objects.get(name="Pasted").rules == TRIALS | {"match": "any"}


def test_a_new_segment_starts_with_one_empty_condition(editor_client, catalogue):
    html = editor_client.get("/segments/new/").content.decode()
    assert 'name="c0-kind"' in html and 'name="c1-kind"' not in html
    assert "cannot be shown as rows" not in html
    assert 'list="attribute-names"' in html and '<option value="plan" label="text">' in html


def test_the_demo_segments_open_in_the_builder(editor_client, catalogue):
    from segments.management.commands.seed_demo import DEMO_SEGMENTS

    for name, _description, rules in DEMO_SEGMENTS:
        segment = SegmentFactory(name=name, rules=rules)
        html = editor_client.get(f"/segments/{segment.pk}/edit/").content.decode()
        assert 'name="c0-kind"' in html, name
        assert "cannot be shown as rows" not in html, name


def test_stored_rules_the_validator_refuses_open_as_json(editor_client, catalogue):
    segment = SegmentFactory(rules={"match": "all", "conditions": [{"type": "mood"}]})
    html = editor_client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert "cannot be shown as rows" in html and "unknown condition type" in html
    assert '<details class="advanced" open>' in html


def test_viewers_see_the_rules_in_plain_words_and_no_builder(viewer_client):
    segment = SegmentFactory(rules=TRIALS)
    html = viewer_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "Attribute “plan” is “trial”" in html and 'name="c0-kind"' not in html
    assert viewer_client.get(f"/segments/{segment.pk}/edit/").status_code == 403
