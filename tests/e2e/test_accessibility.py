"""Every dashboard page, as an editor and as a viewer, at 1280 and 390 px
wide, in Chromium: axe-core (vendored, no network) finds no serious or
critical WCAG 2.1 A/AA violation, and no page is wider than the screen (a
wide table scrolls inside its own box).

To check a new page, add one line to PAGES (or PUBLIC_PAGES). A viewer sees
the 403 page where a page needs Edit access: that page is checked too.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from segments.deletion.services import deletion_run, deletion_start
from segments.models import DeletionJob
from tests.conftest import PASSWORD
from tests.segments.population import build_population

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# name, path; {placeholders} are filled from World (below).
PAGES = [
    ("segment list", "/segments/"),
    ("segment", "/segments/{segment}/"),
    ("segment, members searched", "/segments/{segment}/?q=example"),
    ("segment, deletion running", "/segments/{running}/"),
    ("segment, deletion stopped part-way", "/segments/{stopped}/"),
    ("segment, deleted", "/segments/{deleted}/"),
    ("new segment (builder)", "/segments/new/"),
    ("edit segment (builder)", "/segments/{segment}/edit/"),
    ("delete profiles (page without JS)", "/segments/{segment}/delete-profiles/"),
    ("delete segment", "/segments/{segment}/delete/"),
    ("deletions", "/segments/deletions/"),
    ("deletions, failed only", "/segments/deletions/?status=failed"),
    ("deletion receipt", "/segments/deletions/{receipt}/receipt/"),
    ("deletion receipt, still running", "/segments/deletions/{running_job}/receipt/"),
    ("profile list", "/profiles/"),
    ("profile", "/profiles/{profile}/"),
    ("profile's events", "/profiles/{profile}/events/"),
    ("exclude instead of deleting", "/segments/{segment}/archive-instead/"),
    ("campaign list", "/campaigns/"),
    ("campaign", "/campaigns/{campaign}/"),
    ("404: no such page", "/no-such-page/"),
    ("404: no such segment", "/segments/987654321/"),
    ("404: deleted profile", "/profiles/{deleted_profile}/"),
    ("400: unreadable request", "/profiles/?" + "&".join(f"f{i}=1" for i in range(1200))),
]
# Pages for someone logged out.
PUBLIC_PAGES = [
    ("login", "/accounts/login/"),
    ("404 logged out", "/no-such-page/"),
]
# Django admin pages where admins hand out access (as a superuser).
ADMIN_PAGES = [
    ("user list", "/admin/auth/user/"),
    ("user list, filtered by access", "/admin/auth/user/?access=view"),
    ("user page", "/admin/auth/user/{bob}/change/"),
    ("new user", "/admin/auth/user/add/"),
    ("group list", "/admin/auth/group/"),
    ("Editors group", "/admin/auth/group/{editors}/change/"),
]
# Findings in Django's own code, not ours to fix: SelectFilter2.js (the
# two-pane widget for permissions) gives its search icons an aria-label
# without a role; admin/search_form.html's "(4 total)" link after a filter
# differs from its text by colour alone.
DJANGOS_OWN = {"aria-prohibited-attr": ".search-label-icon", "link-in-text-block": ".small > a"}
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
ROLES = {"editor": "alice", "viewer": "bob"}

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = ("serious", "critical")


def violations(page, impacts=FAILING_IMPACTS, *, ignore=None) -> list[str]:
    """axe's violations of the given impacts, one line each; ``ignore`` maps a
    rule to a selector part: nodes whose target contains it are not counted."""
    page.evaluate(AXE)
    return page.evaluate(
        "async ([tags, impacts, ignore]) =>"
        " (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.filter(v => impacts.includes(v.impact))"
        ".map(v => ({...v, nodes: v.nodes.filter(n => !(v.id in ignore"
        " && n.target.join(' ').includes(ignore[v.id])))}))"
        ".filter(v => v.nodes.length)"
        ".map(v => v.impact + ' ' + v.id + ': ' + v.help + ' @ ' +"
        " v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))",
        [RULES, list(impacts), ignore or {}],
    )


def overflow(page) -> str | None:
    """Why the page is wider than the screen, or None."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.scrollWidth, screen = window.innerWidth;
          if (width <= screen) return null;
          const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > screen + 1)
            .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));
          return `${width} px wide on a ${screen} px screen: ${wide.join(', ')}`;
        }"""
    )


def problems_of(page) -> list[str]:
    found = violations(page)
    wide = overflow(page)
    return found + ([f"wider than the screen: {wide}"] if wide else [])


@dataclass
class World:
    segment: int
    running: int
    stopped: int
    deleted: int
    profile: int
    deleted_profile: int
    campaign: int
    receipt: int
    running_job: int


@pytest.fixture
def world(alice) -> World:
    """Small, but with every state a page can be in: members, a deletion
    running, one stopped part-way, one finished (its profiles' old links)."""
    population = build_population(doomed=3, survivors=3, events_each=2)
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
    deleted = build_population(doomed=2, survivors=1, events_each=1, name="Deleted")
    done = deletion_start(
        segment=deleted.segment, user=alice, typed_name="Deleted", expected_count=2
    ).job
    while deletion_run(job_id=done.pk, slice_seconds=60) not in ("completed", "failed"):
        pass
    return World(
        segment=population.segment.pk,
        running=running.segment.pk,
        stopped=stopped.segment.pk,
        deleted=deleted.segment.pk,
        profile=population.doomed[0],
        deleted_profile=deleted.doomed[0],
        campaign=population.campaigns[0].pk,
        receipt=done.pk,
        running_job=job.pk,
    )


def logged_in_page(browser, live_server, viewport, username):
    """One browser context per role and width, logged in once through the form."""
    context = browser.new_context(viewport=viewport, bypass_csp=True)  # axe is injected
    page = context.new_page()
    if username:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/segments/")
    return page


def visit(page, url):
    page.goto(url)
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("role", ROLES)
def test_every_dashboard_page_passes_axe_and_fits_the_screen(
    browser, live_server, world, alice, bob, role, width
):
    page = logged_in_page(browser, live_server, WIDTHS[width], ROLES[role])
    found = {}
    for name, path in PAGES:
        visit(page, live_server.url + path.format(**vars(world)))
        found[name] = problems_of(page)

    # The deletion dialog, opened from the ••• menu as a marketer would
    # (a viewer finds the item disabled, with the reason).
    visit(page, f"{live_server.url}/segments/{world.segment}/")
    page.get_by_role("button", name="Segment actions").click()
    if role == "editor":
        page.get_by_role("menuitem", name="Delete Profiles...").click()
        page.get_by_role("dialog").wait_for()
        found["delete dialog"] = problems_of(page)
    else:
        found["actions menu"] = problems_of(page)

    # Pages a browser cannot reach on purpose: render each as Django does
    # (no request) and show it at the site's address, so its styles load.
    for name, template in [("500", "500.html"), ("403: expired form", "403_csrf.html")]:
        page.set_content(render_to_string(template))
        page.wait_for_load_state("networkidle")
        found[name] = problems_of(page)
    page.context.close()
    assert {name: problems for name, problems in found.items() if problems} == {}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_public_pages_pass_axe_and_fit_the_screen(browser, live_server, width):
    page = logged_in_page(browser, live_server, WIDTHS[width], None)
    found = {}
    for name, path in PUBLIC_PAGES:
        visit(page, live_server.url + path)
        found[name] = problems_of(page)
    page.context.close()
    assert {name: problems for name, problems in found.items() if problems} == {}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_admin_pages_for_access_pass_axe_but_for_djangos_own(
    browser, live_server, admin_user, bob, width
):
    from django.contrib.auth.models import Group

    page = logged_in_page(browser, live_server, WIDTHS[width], None)
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(admin_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    ids = {"bob": bob.pk, "editors": Group.objects.get(name="Editors").pk}
    found = {}
    for name, path in ADMIN_PAGES:
        visit(page, live_server.url + path.format(**ids))
        found[name] = violations(page, ignore=DJANGOS_OWN)
        wide = overflow(page)
        found[name] += [f"wider than the screen: {wide}"] if wide else []
    page.context.close()
    assert {name: problems for name, problems in found.items() if problems} == {}


def test_the_check_reports_a_violation_when_there_is_one(page):
    page.set_content('<html lang="en"><body><main><img src="a.png"></main></body></html>')
    assert any(" image-alt:" in v for v in violations(page))


def test_the_check_reports_a_page_wider_than_the_screen(page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_content('<html lang="en"><body><div style="width:600px">x</div></body></html>')
    assert "px wide on a 390 px screen: div" in overflow(page)
