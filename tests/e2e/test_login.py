import pytest
from playwright.sync_api import expect

from tests.segments.factories import SegmentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_editor_logs_in_and_sees_the_segments(live_server, login, alice):
    SegmentFactory(name="Trial users in Germany", member_count=1234)
    page = login(alice)
    expect(page).to_have_url(f"{live_server.url}/segments/")
    expect(page.get_by_role("heading", name="Segments")).to_be_visible()
    expect(page.get_by_role("link", name="Trial users in Germany")).to_be_visible()
    expect(page.get_by_text("1,234")).to_be_visible()
