"""A marketer builds "plan is trial, country is FR or ES, did not purchase in
the last 30 days" from the rows alone, watches the counts, saves, and finds
the same words and count on the segment page; then the same with the
keyboard only."""

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from segments import tasks
from segments.models import Segment
from tests.e2e.keyboard import press_until_focused
from tests.profiles.factories import EventFactory, ProfileFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PEOPLE = [
    # (plan, country, days since their last purchase or None) -> in the segment?
    ("trial", "FR", None, True),
    ("trial", "ES", 45, True),
    ("trial", "ES", 3, False),
    ("trial", "DE", None, False),
    ("pro", "FR", None, False),
    ("trial", "FR", 40, True),
    ("starter", "ES", None, False),
]
WORDS = [
    "Attribute “plan” is “trial”",
    "Any of these:",
    "Attribute “country” is “FR”",
    "Attribute “country” is “ES”",
    "Did not do “purchase” in the last 30 days",
]


@pytest.fixture
def people():
    cache.clear()  # the pickers' lists of an earlier test
    for i, (plan, country, days, _member) in enumerate(PEOPLE):
        profile = ProfileFactory(
            email=f"person{i}@example.com", properties={"plan": plan, "country": country}
        )
        if days is not None:
            EventFactory(
                profile=profile, name="purchase", occurred_at=timezone.now() - timedelta(days=days)
            )
    return sum(1 for *_, member in PEOPLE if member)


def settled(page):
    """Wait for the debounce and for htmx to have nothing in flight."""
    page.wait_for_timeout(650)
    page.wait_for_function("!document.querySelector('.htmx-request')")


def status(page):
    return page.get_by_test_id("builder-status")


def test_an_editor_builds_a_segment_from_rows_and_the_segment_page_agrees(
    live_server, login, alice, people
):
    page = login(alice)
    page.goto(f"{live_server.url}/segments/new/")
    page.get_by_label("Name", exact=True).fill("Lapsed trials in France or Spain")

    page.get_by_label("Condition 1: attribute name").fill("plan")
    page.get_by_label("Condition 1: attribute name").press("Tab")
    settled(page)
    page.get_by_label("Condition 1: value").fill("trial")
    settled(page)
    expect(page.get_by_test_id("count-1")).to_have_text("5 people")
    expect(status(page)).to_have_text("5 people match these rules.")

    page.get_by_role("button", name="+ Add a group (any / all)").click()
    settled(page)
    page.get_by_label("Condition 2.1: attribute name").fill("country")
    page.get_by_label("Condition 2.1: attribute name").press("Tab")
    settled(page)
    page.get_by_label("Condition 2.1: value").fill("FR")
    settled(page)
    expect(status(page)).to_have_text("2 people match these rules.")
    page.get_by_role("button", name="+ Add a condition to group 2").click()
    settled(page)
    page.get_by_label("Condition 2.2: attribute name").fill("country")
    page.get_by_label("Condition 2.2: attribute name").press("Tab")
    settled(page)
    page.get_by_label("Condition 2.2: value").fill("ES")
    settled(page)
    expect(page.get_by_test_id("count-2")).to_have_text("6 people")
    expect(status(page)).to_have_text("4 people match these rules.")

    page.get_by_role("button", name="+ Add a condition", exact=True).click()
    settled(page)
    page.get_by_label("Condition 3: type").select_option("event")
    settled(page)
    page.get_by_label("Condition 3: event name (leave empty for any event)").fill("purchase")
    page.get_by_label("Condition 3: how often").select_option("not_done")
    settled(page)
    page.get_by_label("Condition 3: in the last how many days (leave empty for all time)").fill(
        "30"
    )
    settled(page)
    expect(status(page)).to_have_text(f"{people} people match these rules.")
    builder_words = page.get_by_test_id("builder-rules").inner_text()
    for words in WORDS:
        assert words in builder_words
    expect(page.get_by_test_id("builder-sample")).to_contain_text("person0@example.com")

    page.get_by_role("button", name="Create segment").last.click()
    expect(page).to_have_url(re.compile(r"/segments/\d+/$"))
    segment = Segment.objects.get(name="Lapsed trials in France or Spain")
    expect(page).to_have_url(f"{live_server.url}/segments/{segment.pk}/")
    tasks.refresh_segment(segment.pk)
    page.reload()
    expect(page.get_by_test_id("member-count")).to_have_text(str(people))
    assert page.get_by_test_id("rules").inner_text() == builder_words


def tab_to(page, locator, *, limit=60):
    """Press Tab until ``locator`` has the focus, as a keyboard user would."""
    press_until_focused(page, locator, limit=limit)


def test_the_same_segment_can_be_built_with_the_keyboard_only(live_server, login, alice, people):
    page = login(alice)
    page.goto(f"{live_server.url}/segments/new/")
    keyboard = page.keyboard

    tab_to(page, page.get_by_label("Name", exact=True))
    keyboard.type("Keyboard-built")
    tab_to(page, page.get_by_label("Condition 1: attribute name"))
    keyboard.type("plan")
    keyboard.press("Tab")
    settled(page)
    tab_to(page, page.get_by_label("Condition 1: value"))
    keyboard.type("trial")
    settled(page)
    expect(status(page)).to_have_text("5 people match these rules.")

    tab_to(page, page.get_by_role("button", name="+ Add a group (any / all)"))
    keyboard.press("Enter")
    settled(page)
    expect(page.get_by_label("Group 2: people must match")).to_be_focused()
    for i, country in enumerate(["FR", "ES"], start=1):
        if i == 2:
            tab_to(page, page.get_by_role("button", name="+ Add a condition to group 2"))
            keyboard.press("Enter")
            settled(page)
            expect(page.get_by_label("Condition 2.2: type")).to_be_focused()
        tab_to(page, page.get_by_label(f"Condition 2.{i}: attribute name"))
        keyboard.type("country")
        keyboard.press("Tab")
        settled(page)
        tab_to(page, page.get_by_label(f"Condition 2.{i}: value"))
        keyboard.type(country)
        settled(page)
    expect(status(page)).to_have_text("4 people match these rules.")

    tab_to(page, page.get_by_role("button", name="+ Add a condition", exact=True))
    keyboard.press("Enter")
    settled(page)
    kind = page.get_by_label("Condition 3: type")
    expect(kind).to_be_focused()
    keyboard.type("Ev")
    settled(page)
    expect(kind).to_have_value("event")
    tab_to(page, page.get_by_label("Condition 3: event name (leave empty for any event)"))
    keyboard.type("purchase")
    tab_to(page, page.get_by_label("Condition 3: how often"))
    keyboard.type("not")
    settled(page)
    tab_to(page, page.get_by_label(re.compile("Condition 3: in the last how many days")))
    keyboard.type("30")
    settled(page)
    expect(status(page)).to_have_text(f"{people} people match these rules.")
    expect(status(page)).to_have_attribute("role", "status")

    # Move the event row up and back again, from the keyboard.
    tab_to(page, page.get_by_role("button", name="Move condition 3 up"))
    keyboard.press("Enter")
    settled(page)
    expect(page.get_by_role("button", name="Move condition 2 up")).to_be_focused()
    expect(page.get_by_label("Condition 2: type")).to_have_value("event")
    keyboard.press("Tab")
    expect(page.get_by_role("button", name="Move condition 2 down")).to_be_focused()
    keyboard.press("Enter")
    settled(page)
    expect(page.get_by_role("button", name="Move condition 3 up")).to_be_focused()
    expect(page.get_by_label("Condition 3: type")).to_have_value("event")

    builder_words = page.get_by_test_id("builder-rules").inner_text()
    tab_to(page, page.get_by_role("button", name="Create segment").last)
    keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/segments/\d+/$"))
    segment = Segment.objects.get(name="Keyboard-built")
    expect(page).to_have_url(f"{live_server.url}/segments/{segment.pk}/")
    tasks.refresh_segment(segment.pk)
    page.reload()
    expect(page.get_by_test_id("member-count")).to_have_text(str(people))
    assert page.get_by_test_id("rules").inner_text() == builder_words
