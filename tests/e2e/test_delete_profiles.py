"""The marketer's path through a deletion, in Chromium, with a real worker."""

import re

import pytest
from playwright.sync_api import expect

from profiles.models import Profile
from segments.models import DeletionJob
from tests.e2e.keyboard import press_until_focused
from tests.segments.population import build_population
from tests.workers import QCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def open_actions_menu(page):
    page.get_by_role("button", name="Segment actions").click()
    return page.get_by_role("menu")


def test_an_editor_deletes_the_profiles_of_a_segment(live_server, login, alice):
    population = build_population(doomed=8, survivors=6, events_each=2)
    segment = population.segment
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    expect(page.get_by_test_id("member-count")).to_have_text("8")

    # 1-2. The ••• menu holds Delete Profiles...; it opens a real modal.
    open_actions_menu(page).get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 8 profiles?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This cannot be undone")
    expect(dialog).to_contain_text("event history (16 events)")
    expect(dialog).to_contain_text("anonymized")
    confirm_field = dialog.get_by_label("Type Trial users to confirm")
    expect(confirm_field).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Segment actions")).to_be_focused()

    # 3. A wrong name keeps the button disabled, and the server refuses it too.
    open_actions_menu(page).get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 8 profiles?")
    delete_button = dialog.get_by_role("button", name="Delete Profiles")
    dialog.get_by_label("Type Trial users to confirm").fill("trial users")
    expect(delete_button).to_be_disabled()
    delete_button.evaluate("button => { button.disabled = false; button.click(); }")
    dialog = page.get_by_role("dialog", name="Delete 8 profiles?")
    expect(dialog.get_by_role("alert")).to_contain_text("That is not the segment's name")
    assert not DeletionJob.objects.exists()

    # 4. The exact name starts the job; the page shows its progress.
    dialog.get_by_label("Type Trial users to confirm").fill("Trial users")
    expect(dialog.get_by_role("button", name="Delete Profiles")).to_be_enabled()
    dialog.get_by_role("button", name="Delete Profiles").click()
    expect(page.get_by_test_id("deletion-progress")).to_contain_text("0 of 8 profiles deleted")
    expect(page.get_by_role("progressbar")).to_be_visible()

    # 5. A real worker runs it; the page updates itself and ends on a confirmation.
    with QCluster():
        expect(page.get_by_test_id("deletion-done")).to_contain_text(
            "8 profiles deleted from Trial users", timeout=60_000
        )
    expect(page.get_by_test_id("member-count")).to_have_text("0")
    expect(page.get_by_role("heading", name="Deletion history")).to_be_visible()
    expect(page.get_by_role("heading", name="Trial users")).to_be_visible()
    assert not Profile.objects.filter(pk__in=population.doomed).exists()
    assert Profile.objects.filter(pk__in=population.survivors).count() == 6


def test_a_viewer_has_no_way_to_start_a_deletion(live_server, login, bob):
    population = build_population(doomed=2, survivors=2, events_each=0)
    page = login(bob)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    menu = open_actions_menu(page)
    item = menu.get_by_role("menuitem", name="Delete Profiles...")
    expect(item).to_have_attribute("aria-disabled", "true")
    expect(menu).to_contain_text("You need View and Edit access to delete profiles")
    item.click(force=True)
    expect(page.get_by_role("dialog")).to_have_count(0)
    response = page.goto(f"{live_server.url}/segments/{population.segment.pk}/delete-profiles/")
    assert response.status == 403
    assert re.search("Forbidden", page.content(), re.I)
    assert not DeletionJob.objects.exists()


def test_the_deletion_can_be_confirmed_with_the_keyboard_only(live_server, login, alice):
    """Tab to the ••• button, open it, arrow to Delete Profiles..., type the
    name, Tab to the button, Enter: the job starts and the page says so."""
    population = build_population(doomed=3, survivors=2, events_each=0, name="Lapsed")
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    press_until_focused(page, page.get_by_role("button", name="Segment actions"))
    page.keyboard.press("Enter")
    item = page.get_by_role("menuitem", name="Delete Profiles...")
    press_until_focused(page, item, key="ArrowDown", limit=10)
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Delete 3 profiles?")
    expect(dialog.get_by_label("Type Lapsed to confirm")).to_be_focused()
    page.keyboard.type("Lapsed")
    press_until_focused(page, dialog.get_by_role("button", name="Delete Profiles"), limit=10)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Deletion starting…")).to_be_focused()
    expect(page.get_by_test_id("deletion-progress")).to_contain_text("0 of 3 profiles deleted")
    assert DeletionJob.objects.get().total == 3


def test_after_a_count_change_the_typed_name_stays_and_the_buttons_stay_in_view(
    live_server, login, alice
):
    """At 1280 x 800 the refused dialog keeps what was typed, shows the new
    number in an alert, and its buttons stay on screen (the body scrolls)."""
    from segments.models import SegmentMembership

    population = build_population(doomed=5, survivors=2, events_each=0, name="Lapsed")
    page = login(alice)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    open_actions_menu(page).get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 5 profiles?")
    dialog.get_by_label("Type Lapsed to confirm").fill("Lapsed")
    # Someone else's deletion takes one member away meanwhile.
    SegmentMembership.objects.filter(profile_id=population.doomed[0]).delete()
    dialog.get_by_role("button", name="Delete Profiles").click()

    dialog = page.get_by_role("dialog", name="Delete 4 profiles?")
    expect(dialog.get_by_role("alert")).to_contain_text(
        "it now has 4 profiles (the dialog showed 5)"
    )
    expect(dialog.get_by_label("Type Lapsed to confirm")).to_have_value("Lapsed")
    expect(dialog.get_by_test_id("dialog-count")).to_contain_text("this is the number you confirm")
    for name in ("Delete Profiles", "Cancel"):
        button = dialog.get_by_role("button", name=name)
        expect(button).to_be_in_viewport(ratio=1)
    expect(dialog.get_by_role("button", name="Delete Profiles")).to_be_enabled()
    assert not DeletionJob.objects.exists()
    dialog.get_by_role("button", name="Delete Profiles").click()
    expect(page.get_by_test_id("deletion-progress")).to_contain_text("0 of 4 profiles deleted")
    assert DeletionJob.objects.get().total == 4
