"""The type-the-name check in Chromium compares names as the server does."""

import pytest
from playwright.sync_api import expect

from segments.models import DeletionJob
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NAME = "Caf\u00e9 club"


def test_a_name_typed_with_other_spaces_or_accents_enables_delete_and_a_look_alike_is_explained(
    live_server, login, alice
):
    segment = build_population(doomed=3, survivors=2, events_each=1, name=NAME).segment
    page = login(alice)
    page.goto(f"{live_server.url}/segments/{segment.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menu").get_by_role("menuitem", name="Delete Profiles...").click()
    dialog = page.get_by_role("dialog", name="Delete 3 profiles?")
    field = dialog.get_by_label(f"Type {NAME} to confirm")
    delete_button = dialog.get_by_role("button", name="Delete Profiles")

    field.fill(" Cafe\u0301\u200b  club ")  # decomposed é, a zero-width space, spaces
    expect(delete_button).to_be_enabled()

    field.fill("\u0421af\u00e9 club")  # a Cyrillic Es for the C
    expect(delete_button).to_be_disabled()
    delete_button.evaluate("button => { button.disabled = false; button.click(); }")
    dialog = page.get_by_role("dialog", name="Delete 3 profiles?")
    expect(dialog.get_by_role("alert")).to_contain_text("a letter is a different character")
    expect(dialog.get_by_role("alert")).to_contain_text("Cyrillic capital letter es")
    assert not DeletionJob.objects.exists()
