"""Exclude a segment from all campaigns instead of deleting its people, and
undo it from a campaign, in Chromium."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from messaging.models import AudienceSegment, Campaign
from messaging.services import audience_exclude_everywhere
from profiles.models import Profile
from segments.models import DeletionJob
from tests.messaging.audiences import people, segment_of
from tests.messaging.factories import CampaignFactory, draft_campaign

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()


@pytest.fixture
def browser_context_args(browser_context_args):
    # Our CSP allows only our own static scripts; axe is injected by the test.
    return {**browser_context_args, "bypass_csp": True}


def modes(campaign):
    return dict(
        AudienceSegment.objects.filter(campaign=campaign).values_list("segment__name", "mode")
    )


def test_an_editor_excludes_a_segment_instead_of_deleting_and_undoes_it(live_server, login, alice):
    a, b, c = people(3)
    churned = segment_of([a, b], name="Churned")
    includes = draft_campaign(name="Autumn offer", audience=churned)
    shares = draft_campaign(name="Weekly digest", audience=segment_of([b, c], name="Readers"))
    Campaign.objects.filter(pk=shares.pk).update(status=Campaign.Status.SCHEDULED)
    draft_campaign(name="Unrelated", audience=segment_of(people(1), name="Others"))

    page = login(alice)
    page.goto(f"{live_server.url}/segments/{churned.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menu").get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 2 profiles?")
    dialog.get_by_role("link", name="Exclude from all campaigns instead…").click()

    expect(
        page.get_by_role("heading", name="Exclude “Churned” from all campaigns?")
    ).to_be_visible()
    listed = page.get_by_test_id("archive-campaigns")
    expect(listed).to_contain_text("Autumn offer")
    expect(listed).to_contain_text("Weekly digest")
    expect(listed).not_to_contain_text("Unrelated")
    page.get_by_role("button", name="Exclude from 2 campaigns").click()

    expect(page.get_by_text("Excluded “Churned” from 2 campaigns")).to_be_visible()
    used = page.get_by_test_id("segment-campaigns")
    expect(used).to_contain_text("Included in: no campaign.")
    expect(used.get_by_role("link", name="Autumn offer")).to_be_visible()
    expect(used).to_contain_text("Weekly digest (scheduled)")
    assert modes(includes) == {"Churned": "exclude"}
    assert modes(shares) == {"Readers": "include", "Churned": "exclude"}
    assert Profile.objects.count() == 4 and not DeletionJob.objects.exists()

    # Undo, from the campaign's page, at phone width, with one click.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/campaigns/{includes.pk}/")
    expect(page.get_by_test_id("reach")).to_contain_text("Would reach 0 people now")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Undo: excluded (instead of including) Churned").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Undone: included (instead of excluding) Churned."
    )
    expect(page.get_by_test_id("reach")).to_contain_text("Would reach 2 people now")
    assert modes(includes) == {"Churned": "include"}

    page.goto(f"{live_server.url}/campaigns/{shares.pk}/")
    page.get_by_role("button", name="Undo: excluded Churned").click()
    expect(page.get_by_role("status")).to_contain_text("Undone: stopped excluding Churned.")
    expect(page.get_by_role("status")).to_be_focused()
    expect(page.get_by_test_id("excluded")).to_contain_text("None.")
    assert modes(shares) == {"Readers": "include"}
    assert Profile.objects.count() == 4


def test_the_audience_pages_pass_axe_and_fit_a_phone(live_server, login, alice):
    """The new pages, in the states that matter, at 1280 and 390 px wide."""
    a, b = people(2)
    churned = segment_of([a, b], name="Churned customers with a rather long segment name")
    draft = draft_campaign(name="Autumn offer", audience=churned)
    draft_campaign(name="Weekly digest", audience=segment_of([b], name="Readers"))
    sent = CampaignFactory(name="Spring", audience=churned, excluded=[segment_of([a])])
    audience_exclude_everywhere(segment=churned, campaign_ids=[draft.pk], user=alice)
    page = login(alice)
    paths = [
        f"/campaigns/{draft.pk}/",
        f"/campaigns/{sent.pk}/",
        f"/segments/{churned.pk}/archive-instead/",
        f"/segments/{churned.pk}/",
        "/campaigns/",
    ]
    found = {}
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        for path in paths:
            page.goto(f"{live_server.url}{path}")
            assert page.evaluate("document.documentElement.scrollWidth") <= width, (path, width)
            page.evaluate(AXE)
            found[(path, width)] = page.evaluate(
                "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
                "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations.map(v => v.id)"
            )
    assert {key: v for key, v in found.items() if v} == {}
