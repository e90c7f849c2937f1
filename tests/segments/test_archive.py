"""Exclude a segment from all campaigns instead of deleting its profiles
(segments/archive.py), and where the segment page says it is used."""

import pytest

from messaging.models import AudienceChange, AudienceSegment, Campaign
from profiles.models import Profile
from tests.messaging.audiences import people, segment_of
from tests.messaging.factories import CampaignFactory, draft_campaign

pytestmark = pytest.mark.django_db

INCLUDE, EXCLUDE = AudienceSegment.Mode.INCLUDE, AudienceSegment.Mode.EXCLUDE


@pytest.fixture
def world():
    """Churned (a, b); a draft that includes it, a scheduled one whose
    audience shares b, one that shares nobody, one sent."""
    a, b, c, d = people(4)
    churned = segment_of([a, b], name="Churned")
    includes = draft_campaign(name="Includes it", audience=churned)
    shares = draft_campaign(name="Shares b", audience=segment_of([b, c], name="B and C"))
    Campaign.objects.filter(pk=shares.pk).update(status=Campaign.Status.SCHEDULED)
    draft_campaign(name="Disjoint", audience=segment_of([d], name="D"))
    sent = CampaignFactory(name="Sent", audience=churned)
    return churned, includes, shares, sent


def url(segment):
    return f"/segments/{segment.pk}/archive-instead/"


def excluded_from(segment):
    return set(
        AudienceSegment.objects.filter(segment=segment, mode=EXCLUDE).values_list(
            "campaign__name", flat=True
        )
    )


def test_it_lists_the_unsent_campaigns_that_would_reach_these_people(editor_client, world):
    churned, *_ = world
    response = editor_client.get(url(churned))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Includes it" in html and "Shares b" in html
    assert "Disjoint" not in html and "Sent" not in html
    assert "Exclude from 2 campaigns" in html


def test_confirming_excludes_the_segment_and_deletes_nobody(editor_client, world):
    churned, includes, shares, sent = world
    profiles = Profile.objects.count()
    response = editor_client.post(
        url(churned), {"campaigns": [includes.pk, shares.pk]}, follow=True
    )
    assert response.redirect_chain == [(f"/segments/{churned.pk}/", 302)]
    html = response.content.decode()
    assert "Excluded “Churned” from 2 campaigns" in html and "No profile was deleted" in html
    assert excluded_from(churned) == {"Includes it", "Shares b"}
    assert AudienceSegment.objects.get(campaign=sent, segment=churned).mode == INCLUDE
    changes = AudienceChange.objects.filter(kind=AudienceChange.Kind.ARCHIVE)
    assert {(c.campaign_id, c.changed_by_username) for c in changes} == {
        (includes.pk, "alice"),
        (shares.pk, "alice"),
    }
    assert Profile.objects.count() == profiles
    # The segment page now says where it is excluded.
    assert "Excluded from: " in html and f'href="/campaigns/{shares.pk}/"' in html


def test_unticking_a_campaign_leaves_it_alone(editor_client, world):
    churned, _includes, shares, _ = world
    response = editor_client.post(url(churned), {"campaigns": [shares.pk]})
    assert response.status_code == 302
    assert excluded_from(churned) == {"Shares b"}


def test_with_nothing_to_exclude_from_it_says_so(editor_client, world, alice):
    churned, includes, shares, _ = world
    editor_client.post(url(churned), {"campaigns": [includes.pk, shares.pk]})
    html = editor_client.get(url(churned)).content.decode()
    assert "There is nothing to exclude it from" in html


def test_anonymous_users_are_sent_to_log_in(client, world):
    churned, includes, *_ = world
    for response in (
        client.get(url(churned)),
        client.post(url(churned), {"campaigns": includes.pk}),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert excluded_from(churned) == set()


def test_viewers_get_403(viewer_client, world):
    churned, includes, *_ = world
    assert viewer_client.get(url(churned)).status_code == 403
    assert viewer_client.post(url(churned), {"campaigns": includes.pk}).status_code == 403
    assert excluded_from(churned) == set()


def test_an_unknown_segment_is_404(editor_client, world):
    assert editor_client.get("/segments/999999/archive-instead/").status_code == 404


def test_other_methods_are_405(editor_client, world):
    churned, *_ = world
    assert editor_client.put(url(churned)).status_code == 405
    assert editor_client.delete(url(churned)).status_code == 405


@pytest.mark.parametrize(
    "campaigns, message",
    [
        ([], "Choose at least one campaign. Nothing was changed."),
        (["999999"], "was sent or changed meanwhile"),
        (["x"], "was sent or changed meanwhile"),
        ("SENT", "was sent or changed meanwhile"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(editor_client, world, campaigns, message):
    churned, includes, _shares, sent = world
    if campaigns == "SENT":
        campaigns = [includes.pk, sent.pk]
    response = editor_client.post(url(churned), {"campaigns": campaigns})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert excluded_from(churned) == set()
    assert not AudienceChange.objects.exists()


def _sent_just_before_the_lock(monkeypatch, *campaigns):
    """The chosen campaigns are sent between the form's check and the
    service's lock (the real service then runs on the real rows)."""
    from messaging import services as campaign_services

    real = campaign_services.audience_exclude_everywhere

    def racing(**kwargs):
        Campaign.objects.filter(pk__in=[c.pk for c in campaigns]).update(
            status=Campaign.Status.SENT
        )
        return real(**kwargs)

    monkeypatch.setattr(campaign_services, "audience_exclude_everywhere", racing)


def test_when_every_chosen_campaign_was_sent_meanwhile_it_says_nothing_changed(
    editor_client, world, monkeypatch
):
    churned, includes, shares, _sent = world
    _sent_just_before_the_lock(monkeypatch, includes, shares)
    response = editor_client.post(url(churned), {"campaigns": [includes.pk, shares.pk]})
    assert response.status_code == 409
    html = response.content.decode()
    assert "Nothing was changed: the campaigns you chose were sent or changed meanwhile" in html
    assert "from 0 campaigns" not in html
    assert "archive-none" in html  # the fresh list: nothing left to exclude from
    assert excluded_from(churned) == set()
    assert not AudienceChange.objects.exists()


def test_when_some_chosen_campaigns_were_sent_meanwhile_it_says_which_were_left(
    editor_client, world, monkeypatch
):
    churned, includes, shares, _sent = world
    _sent_just_before_the_lock(monkeypatch, shares)
    response = editor_client.post(
        url(churned), {"campaigns": [includes.pk, shares.pk]}, follow=True
    )
    html = response.content.decode()
    assert "Excluded “Churned” from 1 campaign: “Includes it”" in html
    assert "1 of the campaigns you chose was sent or changed meanwhile and left alone" in html
    assert excluded_from(churned) == {"Includes it"}


def test_the_deletion_dialog_offers_it_to_editors(editor_client, world):
    churned, *_ = world
    html = editor_client.get(
        f"/segments/{churned.pk}/delete-profiles/", headers={"HX-Request": "true"}
    ).content.decode()
    assert f'href="/segments/{churned.pk}/archive-instead/"' in html
    assert "Exclude from all campaigns instead…" in html
    assert "they come back as a new profile" in html


def test_the_segment_page_lists_the_campaigns_that_use_it(viewer_client, world):
    churned, includes, _, sent = world
    html = viewer_client.get(f"/segments/{churned.pk}/").content.decode()
    assert "Used in campaigns" in html
    assert f'href="/campaigns/{includes.pk}/"' in html and f'href="/campaigns/{sent.pk}/"' in html
    other = segment_of([], name="Unused")
    html = viewer_client.get(f"/segments/{other.pk}/").content.decode()
    assert "No campaign includes or excludes this segment." in html
