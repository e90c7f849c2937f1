"""Confirming a deletion with "Also stop these people from coming back", then
downloading its receipt, in Chromium, with a real worker."""

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from profiles.models import Profile, Suppression
from segments.models import DeletionJob
from tests.e2e.keyboard import press_until_focused
from tests.segments.population import build_population
from tests.workers import QCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_editor_deletes_with_suppression_and_downloads_the_receipt(live_server, login, alice):
    population = build_population(doomed=5, survivors=3, events_each=1)
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 5 profiles?")

    # Off by default; ticked from the keyboard like any checkbox.
    choice = dialog.get_by_label("Also stop these people from coming back")
    expect(choice).not_to_be_checked()
    expect(choice).to_have_accessible_description(
        "If your integration or the API sends their user id or email again, it is accepted and "
        "discarded instead of creating a new profile. Only a fingerprint (SHA-256) of each id "
        "and email is kept for this; an admin can lift it for one person."
    )
    press_until_focused(page, choice, key="Shift+Tab", limit=10)
    page.keyboard.press("Space")
    expect(choice).to_be_checked()
    dialog.get_by_label("Type Trial users to confirm").fill("Trial users")
    dialog.get_by_role("button", name="Delete Profiles").click()
    expect(page.get_by_test_id("deletion-progress")).to_be_visible()
    job = DeletionJob.objects.get()
    assert job.suppress

    with QCluster():
        expect(page.get_by_test_id("deletion-done")).to_contain_text(
            "5 profiles deleted from Trial users", timeout=60_000
        )
    page.get_by_role("link", name=f"Deletion receipt #{job.pk}").click()
    expect(page.get_by_role("heading", name=f"Deletion receipt #{job.pk}")).to_be_visible()
    expect(page.get_by_test_id("receipt-entries")).to_contain_text("5 profiles")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the receipt (JSON)").click()
    assert download.value.suggested_filename == f"deletion-{job.pk}.json"
    receipt = json.loads(Path(download.value.path()).read_text())
    assert receipt["job"] == job.pk and receipt["suppressed"] is True
    assert len(receipt["profiles"]) == 5
    assert receipt["counts"]["profiles_deleted"] == 5
    assert Suppression.objects.filter(job_id=job.pk).count() == 10
    assert not Profile.objects.filter(pk__in=population.doomed).exists()
