"""On a phone (390 px wide) no dashboard page is wider than the screen: the
top bar wraps, and wide tables scroll inside themselves."""

import pytest

from segments.deletion.services import deletion_start
from segments.models import DeletionJob
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": PHONE}


def test_the_pages_a_marketer_uses_fit_a_phone(live_server, login, alice):
    population = build_population(doomed=3, survivors=3, events_each=1)
    stopped = build_population(doomed=2, survivors=1, events_each=0, name="Stopped part-way")
    job = deletion_start(
        segment=stopped.segment, user=alice, typed_name="Stopped part-way", expected_count=2
    ).job
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", deleted=1, error="boom")
    page = login(alice)
    paths = [
        "/segments/",
        f"/segments/{population.segment.pk}/",
        f"/segments/{population.segment.pk}/edit/",
        f"/segments/{population.segment.pk}/delete-profiles/",
        f"/segments/{stopped.segment.pk}/",
        "/segments/new/",
        "/segments/deletions/",
        "/profiles/",
        f"/profiles/{population.doomed[0]}/",
        "/campaigns/",
        f"/campaigns/{population.campaigns[0].pk}/",
    ]
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
