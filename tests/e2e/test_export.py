"""Export before deleting, in Chromium: the dialog's download and its impact block."""

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from profiles.models import Profile
from segments.models import DeletionJob, ProfileExport
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def open_dialog(page, count):
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menu").get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name=f"Delete {count} profiles?")
    expect(dialog).to_be_visible()
    return dialog


def test_an_editor_downloads_the_profiles_before_deleting_them(live_server, login, alice):
    population = build_population(doomed=3, survivors=2, events_each=0)
    segment = population.segment
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    dialog = open_dialog(page, 3)

    # The impact block loads once the dialog is open. (The population's
    # members were put in by hand; its rules, "subscribed", match the two
    # others too.)
    expect(dialog.get_by_test_id("deletion-impact")).to_contain_text(
        "Other than Trial users loses 2 of its"
    )
    expect(dialog.get_by_test_id("impact-drift")).to_contain_text(
        "2 more would join and 0 would leave"
    )

    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Download these 3 profiles (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.startswith("trial-users-profiles-")
    body = Path(download.path()).read_text(encoding="utf-8-sig")
    header, *rows = list(csv.reader(io.StringIO(body)))
    assert header == ["email", "user id", "subscription status", "n", "plan"]
    members = Profile.objects.filter(pk__in=population.doomed)
    assert sorted(row[0] for row in rows) == sorted(p.email for p in members)
    assert {row[4] for row in rows} == {"trial"}
    assert ProfileExport.objects.get().rows_exported == 3

    # The dialog is still open, and the deletion goes on from there.
    expect(dialog).to_be_visible()
    assert not DeletionJob.objects.exists()
    dialog.get_by_label("Type Trial users to confirm").fill("Trial users")
    dialog.get_by_role("button", name="Delete Profiles").click()
    expect(page.get_by_test_id("deletion-progress")).to_contain_text("of 3 profiles deleted")
    assert DeletionJob.objects.get().total == 3


def test_enter_in_the_name_field_confirms_and_never_downloads(live_server, login, alice):
    population = build_population(doomed=2, survivors=1, events_each=0, name="Lapsed")
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    dialog = open_dialog(page, 2)
    field = dialog.get_by_label("Type Lapsed to confirm")
    field.fill("Lapsed")
    field.press("Enter")
    expect(page.get_by_text("Deleting 2 profiles from Lapsed")).to_be_visible()
    assert not ProfileExport.objects.exists()
