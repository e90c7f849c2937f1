"""Impact before confirming: the other segments these people are in, the
campaigns not yet sent that would reach them, and how the rules' matches
moved since the last refresh, each under a time bound."""

import re
import time

import psycopg
import pytest
from django.db import connection

from messaging.models import Campaign
from segments.deletion import impact
from segments.services import segment_refresh
from tests.messaging.factories import CampaignFactory
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

HTMX = {"headers": {"HX-Request": "true"}}
PLAN_TRIAL = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def world():
    """Trial users: ada, bea, cy. Newsletter: ada, bea and dan. VIP: cy.
    Press: dan only (loses nobody)."""
    segment = SegmentFactory(name="Trial users", rules=PLAN_TRIAL, last_refreshed_at=None)
    ada, bea, cy = (ProfileFactory(properties={"plan": "trial"}) for _ in range(3))
    dan = ProfileFactory(properties={"plan": "pro"})
    segment_refresh(segment=segment)
    newsletter = SegmentFactory(name="Newsletter", member_count=3)
    vip = SegmentFactory(name="VIP", member_count=1)
    press = SegmentFactory(name="Press", member_count=1)
    for profile in (ada, bea, dan):
        SegmentMembershipFactory(segment=newsletter, profile=profile)
    SegmentMembershipFactory(segment=vip, profile=cy)
    SegmentMembershipFactory(segment=press, profile=dan)
    segment.refresh_from_db()
    return {"segment": segment, "people": (ada, bea, cy, dan)}


def impact_url(segment):
    return f"/segments/{segment.pk}/delete-profiles/impact/"


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


def test_it_lists_the_other_segments_and_how_many_each_loses(editor_client, world):
    figures = impact.deletion_impact_figures(segment=world["segment"])
    assert [(o.name, o.losing, o.member_count) for o in figures.others] == [
        ("Newsletter", 2, 3),
        ("VIP", 1, 1),
    ]
    response = editor_client.get(impact_url(world["segment"]), **HTMX)
    assert response.status_code == 200
    page = text(response)
    assert "Newsletter loses 2 of its 3 profiles" in page
    assert "VIP loses 1 of its 1 profile" in page
    assert "Press" not in page


def test_it_lists_the_unsent_campaigns_that_would_reach_these_people(editor_client, world):
    """Reaching them: a draft on the segment itself, a scheduled one on a
    segment sharing members. Not: a sent campaign, one that already excludes
    the segment, one aimed only at people outside it."""
    segment = world["segment"]
    newsletter = SegmentFactory._meta.model.objects.get(name="Newsletter")
    press = SegmentFactory._meta.model.objects.get(name="Press")
    Status = Campaign.Status
    draft = CampaignFactory(name="Spring draft", status=Status.DRAFT, audience=segment)
    CampaignFactory(name="Weekly news", status=Status.SCHEDULED, audience=newsletter)
    CampaignFactory(name="Last month", status=Status.SENT, audience=segment)
    CampaignFactory(name="Press only", status=Status.DRAFT, audience=press)
    CampaignFactory(
        name="Already out", status=Status.DRAFT, audience=newsletter, excluded=[segment]
    )

    figures = impact.deletion_impact_figures(segment=segment)
    assert sorted(c.name for c in figures.campaigns) == ["Spring draft", "Weekly news"]
    assert figures.campaigns_exact
    page = text(editor_client.get(impact_url(segment), **HTMX))
    assert "Spring draft (draft)" in page and "Weekly news (scheduled)" in page
    assert "Last month" not in page and "Press only" not in page and "Already out" not in page
    assert (
        f'href="/campaigns/{draft.pk}/"'
        in editor_client.get(impact_url(segment), **HTMX).content.decode()
    )


def test_it_says_when_no_unsent_campaign_would_reach_them(editor_client, world):
    page = text(editor_client.get(impact_url(world["segment"]), **HTMX))
    assert "none: no draft or scheduled campaign includes these people" in page


def test_it_says_when_nobody_is_in_another_segment(editor_client):
    segment = SegmentFactory(rules=PLAN_TRIAL, last_refreshed_at=None)
    ProfileFactory(properties={"plan": "trial"})
    segment_refresh(segment=segment)
    page = text(editor_client.get(impact_url(segment), **HTMX))
    assert "no other segment: these people are in this one only" in page


def test_it_says_the_rules_still_match_the_same_people(editor_client, world):
    assert impact.deletion_impact_figures(segment=world["segment"]).drift.state == "same"
    page = text(editor_client.get(impact_url(world["segment"]), **HTMX))
    assert "The rules still match exactly these people." in page


def test_it_counts_who_joined_and_left_since_the_last_refresh(editor_client, world):
    ada = world["people"][0]
    ProfileFactory(properties={"plan": "trial"})
    ProfileFactory(properties={"plan": "trial"})
    ada.properties = {"plan": "pro"}
    ada.save()
    drift = impact.deletion_impact_figures(segment=world["segment"]).drift
    assert (drift.state, drift.joined, drift.left) == ("changed", 2, 1)
    page = text(editor_client.get(impact_url(world["segment"]), **HTMX))
    assert "2 more would join and 1 would leave" in page
    assert "Refresh the segment first" in page
    # Nothing was refreshed by looking.
    world["segment"].refresh_from_db()
    assert world["segment"].member_count == 3


def test_rules_that_cannot_be_evaluated_are_named_not_a_crash(editor_client, world):
    segment = world["segment"]
    type(segment).objects.filter(pk=segment.pk).update(rules={"match": "some"})
    segment.refresh_from_db()
    assert impact.deletion_impact_figures(segment=segment).drift.state == "invalid"
    assert "cannot be checked" in text(editor_client.get(impact_url(segment), **HTMX))


@pytest.mark.django_db(transaction=True)
def test_a_figure_that_runs_out_of_time_says_so(editor_client, world, monkeypatch):
    """Another session holds the membership table: each figure gives up at
    its statement timeout and says so, promptly, and the connection is left
    with no timeout of its own."""
    monkeypatch.setattr(impact, "IMPACT_TIMEOUT_MS", 100)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SET lock_timeout = '5s'")
        # Without a time bound of ours, the request would wait for this lock:
        # let it go after 5 s so that such a failure shows, rather than hangs.
        other.execute("SET idle_in_transaction_session_timeout = '5s'")
        other.execute("LOCK TABLE segments_segmentmembership IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = editor_client.get(impact_url(world["segment"]), **HTMX)
        elapsed = time.monotonic() - started
        other.rollback()
    page = text(response)
    assert response.status_code == 200 and elapsed < 3
    assert "other segments these people are in: too many to count quickly" in page
    assert "match the same people now: too many to count quickly" in page
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone()[0] == "0"


# In the dialog --------------------------------------------------------------------


def test_the_htmx_dialog_opens_at_once_and_loads_the_impact_after(editor_client, world):
    segment = world["segment"]
    html = editor_client.get(f"/segments/{segment.pk}/delete-profiles/", **HTMX).content.decode()
    block = re.search(r'<section class="impact" id="deletion-impact"[^>]*>', html)[0]
    assert f'hx-get="{impact_url(segment)}"' in block
    assert 'hx-trigger="load"' in block and 'hx-target="this"' in block
    assert "Newsletter loses" not in html
    assert html.index("Kept:") < html.index('id="deletion-impact"')


def test_the_page_without_javascript_shows_the_impact_inline(editor_client, world):
    segment = world["segment"]
    response = editor_client.get(f"/segments/{segment.pk}/delete-profiles/")
    page = text(response)
    assert "Newsletter loses 2 of its 3 profiles" in page
    assert "hx-trigger" not in response.content.decode()


def test_the_dialog_offers_the_download_before_the_list_of_what_goes(editor_client, world):
    segment = world["segment"]
    for headers in ({}, HTMX["headers"]):
        html = editor_client.get(
            f"/segments/{segment.pk}/delete-profiles/", headers=headers
        ).content.decode()
        button = re.search(r"<button[^>]*data-native-submit[^>]*>([^<]*)</button>", html)
        assert button[1] == "Download these 3 profiles (CSV)"
        assert f'formaction="/segments/{segment.pk}/delete-profiles/export/"' in button[0]
        assert html.index("Download these 3") < html.index("Deleted:")
        # Enter in the name field confirms, as before; it never downloads.
        first_submit = re.search(r'<button type="submit"[^>]*>', html)[0]
        assert "formaction" not in first_submit


# Access ---------------------------------------------------------------------------


def test_the_impact_page_works_without_htmx(editor_client, world):
    response = editor_client.get(impact_url(world["segment"]))
    assert response.status_code == 200
    assert "Back to the deletion" in response.content.decode()


def test_the_impact_requires_a_login(client, world):
    response = client.get(impact_url(world["segment"]), **HTMX)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_viewers_and_outsiders_get_403(client, world, bob, charlie):
    for user in (bob, charlie):
        client.force_login(user)
        assert client.get(impact_url(world["segment"]), **HTMX).status_code == 403


def test_an_unknown_segment_is_404(editor_client, world):
    assert editor_client.get("/segments/999999/delete-profiles/impact/", **HTMX).status_code == 404


def test_the_impact_is_get_only(editor_client, world):
    assert editor_client.post(impact_url(world["segment"]), **HTMX).status_code == 405
