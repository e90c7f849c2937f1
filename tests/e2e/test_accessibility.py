"""The pages a marketer uses pass axe-core's WCAG 2.1 A and AA rules, in
Chromium, in the states that matter: the deletion dialog open, a deletion
running, one stopped part-way, the segment builder with counts."""

from pathlib import Path

import pytest
from django.utils import timezone

from segments.deletion.services import deletion_start
from segments.models import DeletionJob
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def browser_context_args(browser_context_args):
    # Our CSP allows only our own static scripts; axe is injected by the test.
    return {**browser_context_args, "bypass_csp": True}


def violations(page) -> list[str]:
    page.evaluate(AXE)
    found = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => v.id + ': ' + v.help + ' @ ' +"
        " v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))",
        RULES,
    )
    return found


@pytest.fixture
def world(alice):
    population = build_population(doomed=3, survivors=3, events_each=1)
    running = build_population(doomed=2, survivors=1, events_each=0, name="Running")
    job = deletion_start(
        segment=running.segment, user=alice, typed_name="Running", expected_count=2
    ).job
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", deleted=1, started_at=timezone.now(), last_progress_at=timezone.now()
    )
    stopped = build_population(doomed=2, survivors=1, events_each=0, name="Stopped")
    old = deletion_start(
        segment=stopped.segment, user=alice, typed_name="Stopped", expected_count=2
    ).job
    DeletionJob.objects.filter(pk=old.pk).update(status="failed", deleted=1, error="boom")
    return population, running, stopped


def test_the_dashboard_pages_have_no_accessibility_violations(live_server, login, alice, world):
    population, running, stopped = world
    page = login(alice)
    found = {}
    for path in [
        "/segments/",
        f"/segments/{population.segment.pk}/",
        f"/segments/{running.segment.pk}/",
        f"/segments/{stopped.segment.pk}/",
        f"/segments/{population.segment.pk}/edit/",
        "/segments/new/",
        f"/segments/{population.segment.pk}/delete-profiles/",
        f"/segments/{population.segment.pk}/delete/",
        "/segments/deletions/",
        "/profiles/",
        f"/profiles/{population.doomed[0]}/",
        "/campaigns/",
        f"/campaigns/{population.campaigns[0].pk}/",
    ]:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        found[path] = violations(page)
    # The deletion dialog, opened from the ••• menu as a marketer would.
    page.goto(f"{live_server.url}/segments/{population.segment.pk}/")
    page.get_by_role("button", name="Segment actions").click()
    page.get_by_role("menuitem", name="Delete Profiles...").click()
    page.get_by_role("dialog").wait_for()
    found["delete dialog"] = violations(page)
    assert {path: v for path, v in found.items() if v} == {}


def test_the_login_page_has_no_accessibility_violations(live_server, page):
    page.goto(f"{live_server.url}/accounts/login/")
    assert violations(page) == []


def test_the_check_reports_a_violation_when_there_is_one(page):
    page.set_content('<html lang="en"><body><main><img src="a.png"></main></body></html>')
    assert any(v.startswith("image-alt:") for v in violations(page))
