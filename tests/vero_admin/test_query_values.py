"""Query-string values a page cannot read answer 400 with the reason, never
500 and never a guess (``vero_admin.query``). Python's int() reads "١٢" as
12, and "²".isdigit() is True; only ASCII digits are numbers here."""

import pytest

from tests.messaging.factories import CampaignFactory
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

UNICODE_DIGITS = ["\u00b2", "\u0661\u0662", "\uff11", "-1", "1e400", "NaN", "9" * 5000]


def _reason(response) -> str:
    html = response.content.decode()
    assert 'data-testid="bad-request-reason"' in html, html[:500]
    return html


@pytest.mark.parametrize("value", UNICODE_DIGITS)
@pytest.mark.parametrize("parameter", ["after", "before", "page"])
def test_a_profile_list_cursor_that_is_not_ascii_digits_is_refused(admin_client, parameter, value):
    ProfileFactory.create_batch(3)
    response = admin_client.get("/profiles/", {parameter: value})
    assert response.status_code == 400
    assert f"“{parameter}” must be a whole number" in _reason(response)


def test_arabic_digits_are_not_read_as_a_cursor_on_the_segment_members(admin_client):
    segment = SegmentFactory(member_count=1)
    SegmentMembershipFactory(segment=segment, profile=ProfileFactory())
    response = admin_client.get(f"/segments/{segment.pk}/", {"after": "\u0661\u0662"})
    assert response.status_code == 400
    assert "“after” must be a whole number" in _reason(response)
    htmx = admin_client.get(
        f"/segments/{segment.pk}/",
        {"after": "\u00b2"},
        headers={"HX-Request": "true", "HX-Target": "members"},
    )
    assert htmx.status_code == 400 and "<html" not in htmx.content.decode()


def test_a_bad_cursor_on_the_campaign_page_is_refused(admin_client):
    campaign = CampaignFactory()
    response = admin_client.get(f"/campaigns/{campaign.pk}/", {"before": "\u0661\u0662"})
    assert response.status_code == 400


def test_a_bad_older_events_cursor_is_refused(admin_client):
    profile = ProfileFactory()
    response = admin_client.get(f"/profiles/{profile.pk}/events/", {"older": "x~\u0661"})
    assert response.status_code == 400
    assert "“older” is not a position" in _reason(response)


def test_the_deletions_page_does_not_read_arabic_digits_as_a_job_id(admin_client):
    response = admin_client.get("/segments/deletions/", {"before": "\u0661\u0662"})
    assert response.status_code == 400
    assert "That page address is not valid" in response.content.decode()


@pytest.mark.parametrize(
    "url, query",
    [
        ("/segments/", {"sort": "bogus"}),
        ("/segments/", {"sort": "name\x00"}),
        ("/segments/", {"page": "\u0661\u0662"}),
        ("/segments/", {"page": "0"}),
        ("/campaigns/", {"page": "\u0661\u0662"}),
        ("/campaigns/", {"page": "-1"}),
    ],
)
def test_list_pages_refuse_a_sort_or_page_they_cannot_read(admin_client, url, query):
    response = admin_client.get(url, query)
    assert response.status_code == 400
    assert "must be" in _reason(response)


def test_a_valid_sort_and_page_still_work(admin_client):
    SegmentFactory(name="Alpha")
    assert admin_client.get("/segments/", {"sort": "-count", "page": "1"}).status_code == 200
    assert admin_client.get("/campaigns/", {"page": "1"}).status_code == 200


def test_a_nul_in_the_segment_search_is_refused_beside_the_box(admin_client):
    SegmentFactory(name="Alpha")
    response = admin_client.get("/segments/", {"q": "Al\x00pha"})
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        'role="alert" id="q-error">The search contains a character that is not valid text.' in html
    )
    assert 'aria-invalid="true"' in html and ">Alpha<" not in html


def test_a_nul_in_a_django_admin_filter_is_refused(admin_client):
    response = admin_client.get("/admin/django_q/success/", {"id__exact": "a\x00b"})
    assert response.status_code == 400
    assert "not valid text" in _reason(response)


def test_the_reason_is_shown_with_debug_on_too(admin_client, settings):
    settings.DEBUG = True
    response = admin_client.get("/profiles/", {"after": "\u00b2"})
    assert response.status_code == 400
    assert "“after” must be a whole number" in _reason(response)


def test_a_nul_in_the_deletions_status_filter_is_refused(admin_client):
    response = admin_client.get("/segments/deletions/", {"status": "failed\x00"})
    assert response.status_code == 400
    assert "is not a status to filter by" in response.content.decode()
