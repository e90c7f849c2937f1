import re

import pytest
from playwright.sync_api import expect

from segments import tasks
from segments.models import Segment
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def segment():
    ada = ProfileFactory(email="ada@example.com", user_id="u-ada", properties={"plan": "trial"})
    ProfileFactory(email="bea@example.com", user_id="u-bea", properties={"plan": "trial"})
    ProfileFactory(email="cy@example.com", user_id="u-cy", properties={"plan": "starter"})
    EventFactory(profile=ada, name="signed_in")
    return SegmentFactory(
        name="Trial users", rules=TRIALS, member_count=None, last_refreshed_at=None
    )


def test_an_editor_refreshes_a_segment_and_checks_its_members(live_server, login, alice, segment):
    page = login(alice)
    page.get_by_role("link", name="Trial users").click()
    expect(page).to_have_url(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.get_by_text("Attribute “plan” is “trial”")).to_be_visible()
    expect(page.get_by_test_id("member-count")).to_have_text("—")

    page.locator("#refresh-status").get_by_role("button", name="Refresh").click()
    expect(page.get_by_text("Refreshing…")).to_be_visible()
    tasks.refresh_segment(segment.pk)  # what the worker does; the page polls until it is done
    expect(page.get_by_test_id("member-count")).to_have_text("2", timeout=10_000)
    expect(page.get_by_text("Refreshing…")).to_be_hidden()
    members = page.locator("#members tbody")
    expect(members).to_contain_text("ada@example.com")  # the table reloaded itself
    expect(members).to_contain_text("bea@example.com")
    expect(members).not_to_contain_text("cy@example.com")
    assert Segment.objects.get(pk=segment.pk).member_count == 2

    search = page.get_by_label("Find a member")
    search.fill("u-bea")
    search.press("Enter")
    expect(members).to_contain_text("bea@example.com")
    expect(members).not_to_contain_text("ada@example.com")
    expect(page).to_have_url(re.compile(r"\?q=u-bea$"))

    search.fill("cy@example.com")
    search.press("Enter")
    expect(members).to_contain_text("No member matches “cy@example.com”")
    expect(members).to_contain_text("is a profile, but not in this segment")


def test_the_actions_menu_works_from_the_keyboard(live_server, login, alice, segment):
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    button = page.get_by_role("button", name="Segment actions")
    menu = page.get_by_role("menu")
    expect(menu).to_be_hidden()

    button.focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("menuitem", name="Edit")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Refresh")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Delete Profiles...")).to_be_focused()

    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("ArrowDown")
    expect(menu).to_be_visible()
    page.keyboard.press("Enter")  # on Edit
    expect(page).to_have_url(f"{live_server.url}/segments/{segment.pk}/edit/")


def test_a_viewer_sees_the_menu_without_write_actions(live_server, login, bob, segment):
    page = login(bob)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    expect(page.get_by_role("menu")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Edit")).to_have_count(0)
    expect(page.get_by_role("menuitem", name="Refresh")).to_have_count(0)
    expect(page.get_by_role("button", name="Refresh")).to_have_count(0)
