"""A retention schedule, set up and paused with the keyboard on a phone
(390 px wide), in Chromium; and what a viewer finds."""

import datetime

import pytest
from playwright.sync_api import expect

from segments.models import RetentionSchedule, Segment
from segments.retention.services import retention_create
from tests.e2e.keyboard import press_until_focused
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE}


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_an_editor_schedules_and_pauses_with_the_keyboard_on_a_phone(live_server, login, alice):
    population = build_population(doomed=4, survivors=2, events_each=0)
    segment = population.segment
    # The rules that picked its members (the factory's default picks everyone subscribed).
    Segment.objects.filter(pk=segment.pk).update(rules=TRIALS)
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")

    # The ••• menu, by keyboard: the item opens the form.
    press_until_focused(page, page.get_by_role("button", name="Segment actions"))
    page.keyboard.press("Enter")
    item = page.get_by_role("menuitem", name="Delete this segment's members automatically…")
    press_until_focused(page, item, key="ArrowDown", limit=12)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/segments/{segment.pk}/retention/new/")
    assert fits_the_screen(page)

    # Every field has its label; the button waits for the exact name.
    page.get_by_label("Every day").check()
    page.get_by_label("At (time of day, UTC)").fill("04:30")
    page.get_by_label("Most profiles a run may delete").fill("50")
    submit = page.get_by_role("button", name="Schedule deletion")
    expect(submit).to_be_disabled()
    name = page.get_by_label("Type Trial users to confirm")
    name.fill("trial users")
    expect(page.locator("#retention-hint")).to_contain_text("Not a match yet")
    expect(submit).to_be_disabled()
    name.fill("Trial users")
    expect(page.locator("#retention-hint")).to_contain_text("The name matches")
    expect(page.locator("#retention-hint")).to_have_attribute("aria-live", "polite")
    press_until_focused(page, submit, limit=6)
    page.keyboard.press("Enter")

    # The schedule's page: its status, the next run, and the dry run.
    page.wait_for_url(f"**/segments/{segment.pk}/retention/")
    expect(page.get_by_role("status")).to_contain_text("Scheduled: every day at 04:30")
    expect(page.get_by_role("heading", name="Active: Every day at 04:30")).to_be_visible()
    expect(page.get_by_test_id("dry-run-count")).to_have_text("4 profiles")
    assert fits_the_screen(page)

    press_until_focused(page, page.get_by_role("button", name="Pause"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Paused. Nothing runs until you resume.")
    expect(page.get_by_test_id("pause-reason")).to_contain_text("Paused by alice")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert fits_the_screen(page)
    assert RetentionSchedule.objects.get().is_paused

    # The segment page says so too.
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.get_by_test_id("retention-card")).to_contain_text("Automatic deletion: paused")

    # Resuming confirms the rules again: the name, typed, as when creating it.
    page.goto(f"{live_server.url}/segments/{segment.pk}/retention/")
    name_box = page.get_by_label("Type the segment's name to resume")
    press_until_focused(page, name_box)
    page.keyboard.type(segment.name[:-1])
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("The schedule is still paused.")
    expect(page.get_by_label("Type the segment's name to resume")).to_be_focused()
    assert fits_the_screen(page)
    page.get_by_label("Type the segment's name to resume").fill(segment.name)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Resumed.")
    assert not RetentionSchedule.objects.get().is_paused
    assert fits_the_screen(page)
    press_until_focused(page, page.get_by_role("button", name="Pause"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Paused.")

    # The segment page says so too, again.
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.get_by_test_id("retention-card")).to_contain_text("Automatic deletion: paused")


def test_a_viewer_sees_the_schedule_but_no_buttons(live_server, login, alice, bob):
    population = build_population(doomed=2, survivors=1, events_each=0)
    segment = population.segment
    retention_create(
        segment=segment,
        user=alice,
        typed_name=segment.name,
        frequency="weekly",
        weekday=2,
        time_of_day=datetime.time(3),
        max_profiles=10,
    )
    page = login(bob)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menuitem", name="Automatic deletion (active)…").click()
    page.wait_for_url(f"**/segments/{segment.pk}/retention/")
    expect(page.get_by_role("heading", name="Active: Every Wednesday at 03:00")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete schedule")).to_have_count(0)
    expect(page.get_by_text("You need View and Edit access to pause")).to_be_visible()
