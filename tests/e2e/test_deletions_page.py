"""The deletions page in Chromium: progress moves without a reload, and the
page stops asking once nothing runs."""

import pytest
from playwright.sync_api import expect

from segments.models import DeletionJob
from tests.segments.factories import SegmentFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_deletions_page_follows_a_running_deletion_until_it_ends(live_server, login, bob):
    segment = SegmentFactory(name="Trial users")
    job = DeletionJob.objects.create(
        segment=segment,
        segment_name=segment.name,
        created_by_username="alice",
        status="running",
        total=200,
        deleted=50,
    )
    page = login(bob)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{live_server.url}/segments/deletions/?status=active")
    row = page.get_by_test_id(f"deletion-{job.pk}")
    expect(row.get_by_role("progressbar")).to_have_attribute("value", "25")

    DeletionJob.objects.filter(pk=job.pk).update(deleted=150)
    expect(row.get_by_role("progressbar")).to_have_attribute("value", "75", timeout=10_000)
    assert any("status=active" in url for url in requests[1:])

    DeletionJob.objects.filter(pk=job.pk).update(status="completed", deleted=200)
    expect(page.get_by_text("No deletion is in progress.")).to_be_visible(timeout=10_000)
    asked = len(requests)
    page.wait_for_timeout(5000)
    assert len(requests) == asked
