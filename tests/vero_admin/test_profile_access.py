"""Segment and campaign access alone never show who the people are: member
lists, member search and campaign recipients need ``profiles.view_profile``."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.messaging.factories import CampaignFactory, MessageFactory
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db


def _client_with(*perms: str) -> Client:
    user = User.objects.create_user("dana", "dana@example.com", "pw")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def segment_with_member():
    segment = SegmentFactory(name="Trials", member_count=1)
    SegmentMembershipFactory(
        segment=segment, profile=ProfileFactory(email="ada@example.com", user_id="u-ada")
    )
    return segment


def test_segment_access_alone_shows_the_count_but_not_the_members(segment_with_member):
    client = _client_with("segments.view_segment")
    response = client.get(f"/segments/{segment_with_member.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "ada@example.com" not in html and "u-ada" not in html
    assert "seeing its members needs access to profiles" in html
    assert '<strong data-testid="member-count">1</strong>' in html


def test_segment_access_alone_cannot_probe_an_email_through_the_member_search(
    segment_with_member,
):
    ProfileFactory(email="outside@example.com")
    client = _client_with("segments.view_segment")
    for query in ("ada@example.com", "outside@example.com"):
        for headers in ({}, {"HX-Request": "true", "HX-Target": "members"}):
            response = client.get(
                f"/segments/{segment_with_member.pk}/", {"q": query}, headers=headers
            )
            html = response.content.decode()
            assert response.status_code == 200
            assert "example.com" not in html.replace(query, "")
            assert "Exact match" not in html and "is a profile" not in html
            assert "needs access to profiles" in html


def test_profile_access_shows_the_members_and_their_search(segment_with_member):
    client = _client_with("segments.view_segment", "profiles.view_profile")
    html = client.get(f"/segments/{segment_with_member.pk}/", {"q": "ada"}).content.decode()
    assert "ada@example.com" in html and "needs access to profiles" not in html


def test_campaign_access_alone_shows_the_report_but_not_the_recipients():
    campaign = CampaignFactory(name="Launch")
    MessageFactory(campaign=campaign, profile=ProfileFactory(email="ada@example.com"))
    client = _client_with("messaging.view_campaign", "messaging.view_message")
    response = client.get(f"/campaigns/{campaign.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "ada@example.com" not in html
    assert 'data-stat="sent">1<' in html
    assert "Seeing who received this campaign needs access to profiles" in html


def test_campaign_and_profile_access_show_the_recipients():
    campaign = CampaignFactory(name="Launch")
    MessageFactory(campaign=campaign, profile=ProfileFactory(email="ada@example.com"))
    client = _client_with(
        "messaging.view_campaign", "messaging.view_message", "profiles.view_profile"
    )
    html = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "ada@example.com" in html and "needs access to profiles" not in html


def test_the_rule_builder_counts_but_shows_no_sample_without_profile_access():
    from tests.segments.test_views import PLAN_TRIAL, rows

    ProfileFactory(email="ada@example.com", properties={"plan": "trial"})
    client = _client_with("segments.view_segment", "segments.add_segment")
    for url in ("/segments/builder/count/", "/segments/builder/"):
        response = client.post(url, rows(PLAN_TRIAL), headers={"HX-Request": "true"})
        html = response.content.decode()
        assert response.status_code == 200
        assert "ada@example.com" not in html and 'data-testid="builder-sample"' not in html
        assert "Seeing some of the people who match needs access to profiles" in html
    page = client.get("/segments/new/").content.decode()
    assert "ada@example.com" not in page


def test_the_rule_builder_shows_a_sample_with_profile_access():
    from tests.segments.test_views import PLAN_TRIAL, rows

    ProfileFactory(email="ada@example.com", properties={"plan": "trial"})
    client = _client_with("segments.view_segment", "segments.add_segment", "profiles.view_profile")
    html = client.post(
        "/segments/builder/count/", rows(PLAN_TRIAL), headers={"HX-Request": "true"}
    ).content.decode()
    assert "ada@example.com" in html
