"""Editing a campaign's audience on its page (messaging.views)."""

import pytest

from messaging.models import AudienceChange, AudienceSegment, Campaign
from messaging.services import audience_exclude_everywhere
from tests.messaging.audiences import people, segment_of
from tests.messaging.factories import CampaignFactory, draft_campaign

pytestmark = pytest.mark.django_db

INCLUDE, EXCLUDE = AudienceSegment.Mode.INCLUDE, AudienceSegment.Mode.EXCLUDE
HTMX = {"HX-Request": "true"}


def modes(campaign):
    return dict(
        AudienceSegment.objects.filter(campaign=campaign).values_list("segment__name", "mode")
    )


@pytest.fixture
def world():
    """A draft to people a, b, c, and a segment of b alone to exclude."""
    a, b, c = people(3)
    campaign = draft_campaign(name="Autumn", audience=segment_of([a, b, c], name="Everyone"))
    return campaign, segment_of([b], name="Bob only")


def add(client, campaign, **data):
    return client.post(f"/campaigns/{campaign.pk}/audience/add/", data, headers=HTMX)


def test_the_page_shows_the_audience_and_how_many_it_would_reach(editor_client, world):
    campaign, _ = world
    response = editor_client.get(f"/campaigns/{campaign.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Would reach <strong>3 people</strong> now" in html
    assert "Everyone" in html and "Add to audience" in html


def test_an_editor_excludes_a_segment_and_the_reach_drops(editor_client, world):
    campaign, bob_only = world
    response = add(editor_client, campaign, segment=bob_only.pk, mode=EXCLUDE)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="audience"')
    assert 'role="status" tabindex="-1" autofocus>Excluded Bob only.' in html
    assert "Would reach <strong>2 people</strong> now" in html
    assert modes(campaign) == {"Everyone": INCLUDE, "Bob only": EXCLUDE}
    change = AudienceChange.objects.get()
    assert (change.changed_by_username, change.after, change.segment_name) == (
        "alice",
        EXCLUDE,
        "Bob only",
    )
    assert "alice excluded Bob only" in html


def test_without_javascript_a_change_redirects_to_the_page_with_a_message(editor_client, world):
    campaign, bob_only = world
    url = f"/campaigns/{campaign.pk}/audience/add/"
    response = editor_client.post(url, {"segment": bob_only.pk, "mode": INCLUDE}, follow=True)
    assert response.redirect_chain == [(f"/campaigns/{campaign.pk}/", 302)]
    assert "Included Bob only." in response.content.decode()


def test_an_editor_removes_a_segment(editor_client, world):
    campaign, _ = world
    everyone = campaign.audience.get().segment
    response = editor_client.post(
        f"/campaigns/{campaign.pk}/audience/remove/", {"segment": everyone.pk}, headers=HTMX
    )
    assert response.status_code == 200
    assert "Stopped including Everyone." in response.content.decode()
    assert modes(campaign) == {}


def test_an_editor_undoes_an_exclude_instead_with_one_click(editor_client, world, alice):
    campaign, bob_only = world
    (change,) = audience_exclude_everywhere(
        segment=bob_only, campaign_ids=[campaign.pk], user=alice
    )
    page = editor_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Excluded instead of deleting its profiles" in page
    assert 'aria-label="Undo: excluded Bob only"' in page
    response = editor_client.post(
        f"/campaigns/{campaign.pk}/audience/undo/", {"change": change.pk}, headers=HTMX
    )
    assert response.status_code == 200
    assert "Undone: stopped excluding Bob only." in response.content.decode()
    assert modes(campaign) == {"Everyone": INCLUDE}
    assert "Undo: excluded" not in response.content.decode()


# Refusals ------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, world):
    campaign, _bob_only = world
    for action in ("add", "remove", "undo"):
        response = client.post(f"/campaigns/{campaign.pk}/audience/{action}/", {"segment": 1})
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert modes(campaign) == {"Everyone": INCLUDE}


def test_viewers_see_the_audience_but_cannot_change_it(viewer_client, world):
    campaign, bob_only = world
    page = viewer_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Everyone" in page and "Add to audience" not in page and "Remove" not in page
    assert add(viewer_client, campaign, segment=bob_only.pk, mode=EXCLUDE).status_code == 403
    assert modes(campaign) == {"Everyone": INCLUDE}


def test_an_unknown_campaign_is_404(editor_client, world):
    _, bob_only = world
    assert (
        add(editor_client, Campaign(pk=999999), segment=bob_only.pk, mode=INCLUDE).status_code
        == 404
    )


def test_the_audience_endpoints_refuse_get(editor_client, world):
    campaign, _ = world
    for action in ("add", "remove", "undo"):
        assert editor_client.get(f"/campaigns/{campaign.pk}/audience/{action}/").status_code == 405


@pytest.mark.parametrize(
    "data, message",
    [
        ({"segment": "999999", "mode": INCLUDE}, "That segment does not exist any more"),
        ({"segment": "abc", "mode": INCLUDE}, "Choose a segment from the list."),
        ({"segment": "99999999999999999999", "mode": INCLUDE}, "Choose a segment from the list."),
        ({"mode": INCLUDE}, "Choose a segment."),
        ({"segment": "BOB", "mode": "both"}, "Choose whether to include or exclude"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_changes_nothing(
    editor_client, world, data, message
):
    campaign, bob_only = world
    if data.get("segment") == "BOB":
        data["segment"] = bob_only.pk
    response = add(editor_client, campaign, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    assert modes(campaign) == {"Everyone": INCLUDE}
    assert not AudienceChange.objects.exists()


def test_a_segment_already_included_cannot_also_be_excluded(editor_client, world):
    campaign, _ = world
    everyone = campaign.audience.get().segment
    response = add(editor_client, campaign, segment=everyone.pk, mode=EXCLUDE)
    assert response.status_code == 400
    assert "“Everyone” is already included" in response.content.decode()
    assert modes(campaign) == {"Everyone": INCLUDE}
    assert not AudienceChange.objects.exists()


def test_removing_a_segment_not_in_the_audience_is_refused(editor_client, world):
    campaign, bob_only = world
    for segment in (bob_only.pk, 999999, "x"):
        response = editor_client.post(
            f"/campaigns/{campaign.pk}/audience/remove/", {"segment": segment}, headers=HTMX
        )
        assert response.status_code == 400
        assert "Nothing was changed" in response.content.decode() or "not in this" in (
            response.content.decode()
        )
    assert modes(campaign) == {"Everyone": INCLUDE}


def test_undoing_an_unknown_or_foreign_change_is_refused(editor_client, world, alice):
    campaign, bob_only = world
    other = draft_campaign()
    (foreign,) = audience_exclude_everywhere(segment=bob_only, campaign_ids=[other.pk], user=alice)
    for change in (foreign.pk, 999999, "x", ""):
        response = editor_client.post(
            f"/campaigns/{campaign.pk}/audience/undo/", {"change": change}, headers=HTMX
        )
        assert response.status_code == 400
        assert "no such change" in response.content.decode()
    assert modes(other) == {"Bob only": EXCLUDE}


def test_a_sent_campaign_keeps_its_report_and_refuses_edits(editor_client):
    segment = segment_of(people(2), name="Everyone")
    sent = CampaignFactory(name="Summer", audience=segment)
    page = editor_client.get(f"/campaigns/{sent.pk}/").content.decode()
    assert "This campaign was sent" in page and "Add to audience" not in page
    assert "Remove" not in page
    for action, data in (
        ("add", {"segment": segment_of([]).pk, "mode": EXCLUDE}),
        ("remove", {"segment": segment.pk}),
        ("undo", {"change": 1}),
    ):
        for headers in ({}, HTMX):
            response = editor_client.post(
                f"/campaigns/{sent.pk}/audience/{action}/", data, headers=headers
            )
            assert response.status_code == 409
            assert "“Summer” was sent" in response.content.decode()
    assert modes(sent) == {"Everyone": INCLUDE}
    assert not AudienceChange.objects.exists()


def test_the_page_says_when_the_reach_is_too_slow_to_count(editor_client, world, monkeypatch):
    from messaging import selectors

    campaign, _ = world
    monkeypatch.setattr(selectors, "campaign_reach", lambda campaign: None)
    page = editor_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "too many to count quickly" in page
