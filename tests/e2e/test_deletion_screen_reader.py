"""A deletion as a keyboard and screen-reader user meets it, in Chromium.

At each step the test checks where the focus is (``document.activeElement``)
and what the page's one live region said: a MutationObserver, installed
before the page's own scripts, records every text the region is given.
"""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from profiles.models import Profile
from segments.models import DeletionJob, Segment
from tests.e2e.keyboard import press_until_focused
from tests.segments.population import build_population
from tests.workers import QCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECORD_THE_LIVE_REGION = """
window.__said = [];
window.__liveRegions = () =>
  document.querySelectorAll("[aria-live], [role=status], [role=alert]").length;
document.addEventListener("DOMContentLoaded", () => {
  const region = document.getElementById("announcer");
  if (!region) return;
  window.__regionAtLoad = region.textContent;
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) window.__said.push(node.textContent);
    }
  }).observe(region, { childList: true, characterData: true, subtree: true });
});
"""

MILESTONE = re.compile(r"Deletion (25|50|75)% done: [\d,]+ of [\d,]+ profiles deleted\.")


def said(page) -> list[str]:
    return page.evaluate("window.__said")


def focused(page) -> dict:
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          return {tag: el.tagName, id: el.id, text: (el.textContent || "").trim(),
                  inDialog: !!el.closest("dialog")};
        }"""
    )


def open_the_dialog_with_the_keyboard(page, name):
    press_until_focused(page, page.get_by_role("button", name="Segment actions"))
    assert focused(page)["id"] == "segment-actions-button"
    page.keyboard.press("Enter")
    item = page.get_by_role("menuitem", name="Delete Profiles...")
    press_until_focused(page, item, key="ArrowDown", limit=10)
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label(f"Type {name} to confirm")).to_be_focused()
    return dialog


def confirm_with_the_keyboard(page, dialog, name):
    hint = dialog.locator("#delete-hint")
    button = dialog.get_by_role("button", name="Delete Profiles")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("aria-describedby", "delete-hint")
    expect(hint).to_have_text("Type the segment's name exactly to enable Delete Profiles.")
    page.keyboard.type(name[:-1])
    expect(hint).to_contain_text("Not a match yet")
    expect(button).to_be_disabled()
    page.keyboard.type(name[-1])
    expect(hint).to_contain_text("The name matches. Delete Profiles deletes")
    expect(button).to_be_enabled()
    press_until_focused(page, button, limit=10)
    page.evaluate("window.__notReloaded = true")
    page.keyboard.press("Enter")


def test_a_keyboard_user_deletes_a_segment_and_hears_the_start_and_the_end_once(
    live_server, login, alice
):
    population = build_population(doomed=8, survivors=4, events_each=1, name="Lapsed")
    segment = population.segment
    page = login(alice)
    page.add_init_script(RECORD_THE_LIVE_REGION)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")

    # Load: one live region, empty, and it stays silent.
    assert page.evaluate("window.__regionAtLoad") == ""
    assert page.evaluate("window.__liveRegions()") == 1
    assert said(page) == []

    # The menu and the dialog, by keyboard; confirming needs the exact name.
    dialog = open_the_dialog_with_the_keyboard(page, "Lapsed")
    assert focused(page)["id"] == "id_typed_name" and focused(page)["inDialog"]
    assert said(page) == []
    confirm_with_the_keyboard(page, dialog, "Lapsed")

    # Confirmed: the dialog is gone, the page was not reloaded, the focus is
    # on the new status and the region said the deletion started.
    expect(page.get_by_role("dialog")).to_have_count(0)
    start = "Deletion started: deleting 8 profiles from Lapsed."
    expect(page.locator("#announcer")).to_have_text(start)
    assert focused(page) == {
        "tag": "H2",
        "id": "deletion-status",
        "text": "Deletion starting…",
        "inDialog": False,
    }
    assert page.evaluate("window.__notReloaded") is True
    assert said(page) == [start]
    bar = page.get_by_role("progressbar", name="Deletion progress")
    expect(bar).to_have_attribute("aria-valuetext", "0 of 8 profiles deleted")
    assert DeletionJob.objects.get().total == 8

    # A real worker runs it. Polls swap the numbers (and the card when its
    # heading changes) under the focus, which stays on the status.
    with QCluster():
        expect(page.get_by_test_id("deletion-done")).to_contain_text(
            "8 profiles deleted from Lapsed", timeout=60_000
        )
    end = "Deletion complete: 8 profiles deleted from Lapsed."
    expect(page.locator("#announcer")).to_have_text(end, timeout=15_000)
    assert focused(page)["id"] == "deletion-status"
    assert focused(page)["text"] == "Deletion complete"
    page.wait_for_timeout(2500)  # no poll runs after the end; nothing more is said
    history = said(page)
    assert history[0] == start and history[-1] == end and history.count(end) == 1
    assert all(MILESTONE.fullmatch(text) for text in history[1:-1]), history
    assert history[1:-1] == sorted(set(history[1:-1]), key=history.index)

    # The count line and the menu changed in place, with no reload.
    assert page.evaluate("window.__notReloaded") is True
    expect(page.get_by_test_id("member-count")).to_have_text("0")
    job = DeletionJob.objects.get()
    expect(page.locator("#member-count-line")).to_contain_text(
        "0 profiles: everyone in this segment was deleted on"
    )
    expect(page.locator("#member-count-line")).to_contain_text(f"(deletion #{job.pk})")
    expect(page.get_by_role("heading", name="Deletion history")).to_be_visible()
    expect(page.locator("#deletion-menu-item")).to_contain_text("Nobody to delete")
    assert page.evaluate("window.__liveRegions()") == 1
    assert not Profile.objects.filter(pk__in=population.doomed).exists()


def test_a_running_deletion_announces_each_milestone_once_not_every_poll(live_server, login, alice):
    """No worker: the test moves the job itself, so the milestones are known."""
    population = build_population(doomed=4, survivors=2, events_each=0, name="Lapsed")
    segment = population.segment
    page = login(alice)
    page.add_init_script(RECORD_THE_LIVE_REGION)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    dialog = open_the_dialog_with_the_keyboard(page, "Lapsed")
    confirm_with_the_keyboard(page, dialog, "Lapsed")
    start = "Deletion started: deleting 4 profiles from Lapsed."
    expect(page.locator("#announcer")).to_have_text(start)
    job = DeletionJob.objects.get()
    region = page.locator("#announcer")
    jobs = DeletionJob.objects.filter(pk=job.pk)

    # Running, 25%: the heading changes (the card swaps, the focus stays).
    now = timezone.now()
    jobs.update(status="running", deleted=1, started_at=now, last_progress_at=now)
    expect(region).to_have_text("Deletion 25% done: 1 of 4 profiles deleted.", timeout=15_000)
    expect(page.get_by_role("heading", name="Deleting profiles…")).to_be_focused()
    page.wait_for_timeout(2500)  # two or three more polls, same milestone

    # 75% (skipping 50%: a poll that jumps says the highest only).
    jobs.update(deleted=3, last_progress_at=timezone.now())
    expect(region).to_have_text("Deletion 75% done: 3 of 4 profiles deleted.", timeout=15_000)
    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuetext", "3 of 4 profiles deleted"
    )

    # The end takes away the Stop deleting… button that has the focus: the
    # focus goes to the status, which now says the deletion is complete.
    press_until_focused(page, page.get_by_role("button", name="Stop deleting…"), limit=10)
    jobs.update(status="completed", deleted=4, finished_at=timezone.now())
    Segment.objects.filter(pk=segment.pk).update(member_count=0)
    end = "Deletion complete: 4 profiles deleted from Lapsed."
    expect(region).to_have_text(end, timeout=15_000)
    expect(page.get_by_role("heading", name="Deletion complete")).to_be_focused()
    page.wait_for_timeout(2500)
    assert said(page) == [
        start,
        "Deletion 25% done: 1 of 4 profiles deleted.",
        "Deletion 75% done: 3 of 4 profiles deleted.",
        end,
    ]
    expect(page.get_by_test_id("member-count")).to_have_text("0")


def test_refresh_keeps_the_focus_in_the_count_and_says_when_it_is_done(live_server, login, alice):
    population = build_population(doomed=3, survivors=2, events_each=0, name="Lapsed")
    page = login(alice)
    page.add_init_script(RECORD_THE_LIVE_REGION)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    page.evaluate("window.__notReloaded = true")
    refresh = page.locator("#refresh-button")
    press_until_focused(page, refresh)
    with QCluster():
        page.keyboard.press("Enter")
        expect(page.locator("#announcer")).to_have_text(
            re.compile(r"^Refreshed: \d+ profiles? in Lapsed\.$"), timeout=30_000
        )
    # While it ran the button was disabled: the focus went to the count line
    # (or stayed on the button when the refresh was done at once), never <body>.
    assert focused(page)["id"] in ("member-count-line", "refresh-button")
    texts = said(page)
    assert texts[-1].startswith("Refreshed:") and len(texts) <= 2
    assert texts[0] in (texts[-1], "Refreshing Lapsed: counting who is in it…")
    assert page.evaluate("window.__notReloaded") is True
