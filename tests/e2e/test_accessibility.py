"""Every dashboard page, as an editor, a viewer and someone with no access
(the 403 page), at 1280 and 390 px wide, in Chromium: axe-core (vendored,
no network) finds no serious or critical WCAG 2.1 A/AA violation, and no
page is wider than the screen (a wide table scrolls inside its own box).

To check a new page, add one line to PAGES (or PUBLIC_PAGES). A viewer sees
the 403 page where a page needs Edit access: that page is checked too.
"""

import datetime
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from messaging.models import AudienceSegment, Campaign
from segments.deletion.services import deletion_run, deletion_start
from segments.models import DeletionJob, RetentionSchedule
from tests.conftest import PASSWORD
from tests.messaging.factories import draft_campaign
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
    ("deletion impact (page without htmx)", "/segments/{segment}/delete-profiles/impact/"),
    ("delete segment", "/segments/{segment}/delete/"),
    ("deletions", "/segments/deletions/"),
    ("deletions, failed only", "/segments/deletions/?status=failed"),
    ("deletion receipt", "/segments/deletions/{receipt}/receipt/"),
    ("deletion receipt, still running", "/segments/deletions/{running_job}/receipt/"),
    ("profile list", "/profiles/"),
    ("profile", "/profiles/{profile}/"),
    ("profile's events", "/profiles/{profile}/events/"),
    ("exclude instead of deleting", "/segments/{segment}/archive-instead/"),
    ("retention schedule, new", "/segments/{segment}/retention/new/"),
    ("retention schedule, paused by the brake", "/segments/{stopped}/retention/"),
    ("campaign list", "/campaigns/"),
    ("campaign", "/campaigns/{campaign}/"),
    ("draft campaign (audience editor)", "/campaigns/{draft}/"),
    ("scheduled campaign", "/campaigns/{scheduled}/"),
    ("404: no such page", "/no-such-page/"),
    ("404: no such segment", "/segments/987654321/"),
    ("404: deleted profile", "/profiles/{deleted_profile}/"),
    ("400: unreadable request", "/profiles/?" + "&".join(f"f{i}=1" for i in range(1200))),
]
# What an editor must find on some pages, so a page checked is the page meant
# (a world missing its campaigns would pass axe on an empty list).
EDITOR_SEES = {
    "deletion impact (page without htmx)": "Spring sale",
    "exclude instead of deleting": "Weekly digest",
    "draft campaign (audience editor)": "Include or exclude",
    "deletion receipt": "Deletion receipt",
    "retention schedule, paused by the brake": "Dry run",
}
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
    ("suppressions", "/admin/profiles/suppression/"),
    ("find a suppression", "/admin/profiles/suppression/find/"),
]
# Findings in Django's own code, not ours to fix: SelectFilter2.js (the
# two-pane widget for permissions) gives its search icons an aria-label
# without a role; admin/search_form.html's "(4 total)" link after a filter
# differs from its text by colour alone.
DJANGOS_OWN = {"aria-prohibited-attr": ".search-label-icon", "link-in-text-block": ".small > a"}
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
# "none" is logged in with no access: every page is the 403 page to charlie.
ROLES = {"editor": "alice", "viewer": "bob", "none": "charlie"}

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
    draft: int
    scheduled: int


@pytest.fixture
def world(alice) -> World:
    """Small, but with every state a page can be in: members, a deletion
    running, one stopped part-way, one finished (its profiles' old links),
    a draft and a scheduled campaign aimed at the segment (the audience
    editor, the impact and the archive-instead lists)."""
    population = build_population(doomed=3, survivors=3, events_each=2)
    draft = draft_campaign(name="Spring sale", audience=population.segment)
    AudienceSegment.objects.create(
        campaign=draft, segment=population.other_segment, mode=AudienceSegment.Mode.EXCLUDE
    )
    scheduled = draft_campaign(name="Weekly digest", audience=population.segment)
    Campaign.objects.filter(pk=scheduled.pk).update(
        status=Campaign.Status.SCHEDULED, scheduled_for=timezone.now() + timedelta(days=2)
    )
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
    RetentionSchedule.objects.create(
        segment=stopped.segment,
        owner=alice,
        owner_username="alice",
        frequency="weekly",
        weekday=0,
        time_of_day=datetime.time(3),
        max_profiles=1,
        status="paused",
        pause_reason="The run found 2 profiles, more than the 1 a run may delete.",
        rules_digest=RetentionSchedule.digest(stopped.segment.rules),
        last_run_at=timezone.now(),
        last_run_note="The run was stopped by the brake.",
    )
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
        draft=draft.pk,
        scheduled=scheduled.pk,
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


def post_stale_export(page, live_server, segment):
    """Download from a dialog opened before the segment's last refresh: the
    browser POSTs the form and meets the export refusal page (409)."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    with page.expect_navigation():
        page.evaluate(
            """([action, token]) => {
              const form = document.createElement('form');
              form.method = 'post';
              form.action = action;
              for (const [name, value] of [['csrfmiddlewaretoken', token], ['expected_count', '3'],
                   ['membership_token', '2001-01-01T00:00:00+00:00']]) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = name; input.value = value;
                form.append(input);
              }
              document.body.append(form);
              form.submit();
            }""",
            [f"{live_server.url}/segments/{segment}/delete-profiles/export/", token],
        )
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("role", ROLES)
def test_every_dashboard_page_passes_axe_and_fits_the_screen(
    browser, live_server, world, alice, bob, charlie, role, width
):
    page = logged_in_page(browser, live_server, WIDTHS[width], ROLES[role])
    found = {}
    for name, path in PAGES:
        visit(page, live_server.url + path.format(**vars(world)))
        found[name] = problems_of(page)
        if role == "editor" and name in EDITOR_SEES:
            assert EDITOR_SEES[name] in page.content(), name
        if role == "none" and name == "segment":
            assert "have access to this" in page.content(), name

    # The deletion dialog, opened from the ••• menu as a marketer would
    # (a viewer finds the item disabled, with the reason).
    visit(page, f"{live_server.url}/segments/{world.segment}/")
    if role != "none":
        page.get_by_role("button", name="Segment actions").click()
    if role == "editor":
        page.get_by_role("menuitem", name="Delete Profiles...").click()
        page.get_by_role("dialog").wait_for()
        found["delete dialog"] = problems_of(page)
        # A stale dialog's download: the export refusal page.
        visit(page, f"{live_server.url}/segments/{world.segment}/")
        post_stale_export(page, live_server, world.segment)
        assert "Nothing was downloaded" in page.content()
        found["export refused"] = problems_of(page)
    elif role == "viewer":
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
