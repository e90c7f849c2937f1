import pytest

from messaging.models import MessageActivity
from tests.messaging.factories import CampaignFactory, MessageActivityFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign():
    campaign = CampaignFactory(name="Spring sale")
    first, second, _ = MessageFactory.create_batch(3, campaign=campaign)
    MessageActivityFactory(message=first, kind=MessageActivity.OPEN)
    MessageActivityFactory(message=first, kind=MessageActivity.OPEN)
    MessageActivityFactory(message=second, kind=MessageActivity.OPEN)
    MessageActivityFactory(message=second, kind=MessageActivity.CLICK)
    return campaign


def test_the_campaign_list_shows_campaigns_with_sends(viewer_client, campaign):
    response = viewer_client.get("/campaigns/")
    assert response.status_code == 200
    assert b"Spring sale" in response.content


def test_the_campaign_report_counts_totals_and_uniques(viewer_client, campaign):
    response = viewer_client.get(f"/campaigns/{campaign.pk}/")
    assert response.status_code == 200
    report = response.context["report"]
    assert (report["sent"], report["opens"], report["unique_opens"]) == (3, 3, 2)
    assert (report["clicks"], report["unique_clicks"]) == (1, 1)


def test_the_report_shows_anonymized_sends_as_deleted_profile(viewer_client, campaign):
    campaign.messages.update(profile=None, recipient_email="")
    response = viewer_client.get(f"/campaigns/{campaign.pk}/")
    assert response.content.count(b"Deleted profile") == 3
    assert response.context["report"]["opens"] == 3


def test_campaign_pages_require_view_access(outsider_client, campaign):
    assert outsider_client.get("/campaigns/").status_code == 403
    assert outsider_client.get(f"/campaigns/{campaign.pk}/").status_code == 403


def test_an_unknown_campaign_is_404(viewer_client):
    assert viewer_client.get("/campaigns/999999/").status_code == 404


def test_campaign_pages_refuse_post(viewer_client, campaign):
    assert viewer_client.post("/campaigns/").status_code == 405
    assert viewer_client.post(f"/campaigns/{campaign.pk}/").status_code == 405
