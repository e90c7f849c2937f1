"""Access, CSRF and no-write-on-GET, for every dashboard URL there is.

The routes come from walking the URL conf, so a view added tomorrow is
checked by these tests without anyone listing it here. What is left out, and
why, is in SKIPPED; a route with a parameter these tests cannot fill fails
loudly until someone teaches OBJECTS how to build it.
"""

import datetime
import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from segments.models import DeletionJob, RetentionSchedule
from tests.messaging.factories import CampaignFactory, MessageFactory
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory, SegmentMembershipFactory

pytestmark = pytest.mark.django_db

# Route prefixes that are not the dashboard, and who covers them.
SKIPPED = {
    "admin/": "Django admin: staff only, Django's own checks",
    "accounts/login/": "the login page is public (see test_login_throttle)",
    "static/": "static files",
    "api/": "the ingestion API uses API keys (tests/profiles/test_api.py)",
    "v1/": "the Segment-compatible API uses API keys (tests/profiles/test_api.py)",
}
# Named routes outside the dashboard's data, each with its reason.
PUBLIC = {
    "home": "a redirect to the segment list, which itself needs a login",
    "favicon": "a redirect to the icon, a static file",
    "logout": "logging out is for anyone with a session (POST only, tested in test_auth)",
}
LOGIN = "/accounts/login/?next="
PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "segments/<int:pk>/deletions/<int:job_pk>/cancel/"
    name: str  # e.g. "segments:deletion_cancel"
    namespace: str

    def __str__(self):
        return self.route


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(filter(None, [namespace, pattern.namespace]))
            yield from _walk(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            name = ":".join(filter(None, [namespace, pattern.name or ""]))
            yield Route(route, name, namespace)


def dashboard_routes() -> list[Route]:
    return [
        route
        for route in _walk(get_resolver().url_patterns)
        if not route.route.startswith(tuple(SKIPPED)) and route.name not in PUBLIC
    ]


ROUTES = dashboard_routes()


@dataclass
class World:
    """One real object of each kind, so every URL gets past its 404."""

    segment: object
    job: object
    profile: object
    campaign: object


@pytest.fixture
def world(alice):
    profile = ProfileFactory(properties={"plan": "trial"})
    EventFactory(profile=profile)
    segment = SegmentFactory(name="World", member_count=1)
    SegmentMembershipFactory(segment=segment, profile=profile)
    job = DeletionJob.objects.create(
        segment=segment, segment_name=segment.name, status="failed", created_by=alice
    )
    # Its retention schedule, so its page and buttons get past their 404.
    RetentionSchedule.objects.create(
        segment=segment,
        owner=alice,
        owner_username=alice.username,
        frequency="daily",
        time_of_day=datetime.time(3, 0),
        max_profiles=10,
        rules_digest="0" * 64,
    )
    # A draft, so the campaign page offers its audience editing too.
    campaign = CampaignFactory(audience=segment, status="draft")
    MessageFactory(campaign=campaign, profile=profile)
    return World(segment, job, profile, campaign)


# Which object fills which URL parameter, per namespace.
OBJECTS = {
    ("segments", "pk"): lambda world: world.segment.pk,
    ("segments", "job_pk"): lambda world: world.job.pk,
    ("profiles", "pk"): lambda world: world.profile.pk,
    ("messaging", "pk"): lambda world: world.campaign.pk,
}


def url_of(route: Route, world: World) -> str:
    def fill(match):
        build = OBJECTS.get((route.namespace, match["name"]))
        if build is None:
            pytest.fail(
                f"{route.name or route.route}: no object for <{match['name']}>; "
                "add one to OBJECTS in this test."
            )
        return str(build(world))

    return "/" + PARAMETER.sub(fill, route.route)


def database_fingerprint() -> dict[str, str]:
    """A digest of every row the dashboard could write, table by table
    (but users' last_login, which logging the test clients in sets)."""
    tables = [
        model._meta.db_table
        for label in ("profiles", "messaging", "segments", "django_q")
        for model in apps.get_app_config(label).get_models()
    ] + ["auth_user", "auth_group", "auth_user_groups"]
    digests = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(
                "SELECT md5(coalesce(string_agg(row, '|' ORDER BY row), '')) FROM "
                f"(SELECT (to_jsonb(t) - 'last_login')::text AS row "
                f"FROM {connection.ops.quote_name(table)} t) rows"
            )
            digests[table] = cursor.fetchone()[0]
    return digests


def client_for(user, **options) -> Client:
    client = Client(**options)
    if user is not None:
        client.force_login(user)
    return client


def test_the_walk_finds_the_dashboard():
    names = {route.name for route in ROUTES}
    assert {
        "segments:list",
        "segments:detail",
        "segments:delete_profiles",
        "segments:deletion_cancel",
        "segments:deletion_resume",
        "segments:deletion_close",
        "segments:deletion_progress",
        "segments:deletion_receipt",
        "segments:deletion_receipt_json",
        "segments:export_members",
        "segments:deletion_impact",
        "segments:deletion_history",
        "profiles:list",
        "profiles:detail",
        "profiles:events",
        "messaging:campaign_list",
        "messaging:campaign_detail",
        "messaging:audience_add",
        "messaging:audience_remove",
        "messaging:audience_undo",
        "segments:archive_instead",
        "segments:retention",
        "segments:retention_create",
        "segments:retention_pause",
        "segments:retention_resume",
        "segments:retention_delete",
    } <= names
    assert not any(route.route.startswith(("api/", "admin/")) for route in ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_anonymous_users_are_sent_to_login(route, world):
    url = url_of(route, world)
    before = database_fingerprint()
    answers = {method: getattr(Client(), method)(url) for method in ("get", "post")}
    for method, response in answers.items():
        assert response.status_code in (302, 405), (method, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith(LOGIN), (method, response["Location"])
    assert any(response.status_code == 302 for response in answers.values())
    assert database_fingerprint() == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_users_without_permissions_get_403(route, world, charlie):
    url = url_of(route, world)
    client = client_for(charlie)
    before = database_fingerprint()
    statuses = {method: getattr(client, method)(url).status_code for method in ("get", "post")}
    assert set(statuses.values()) <= {403, 405}, statuses
    assert 403 in statuses.values(), statuses
    assert database_fingerprint() == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_viewers_cannot_write_anywhere(route, world, bob):
    url = url_of(route, world)
    before = database_fingerprint()
    for headers in ({}, {"HX-Request": "true"}):
        response = client_for(bob).post(url, headers=headers)
        assert response.status_code in (403, 405), response.status_code
    assert database_fingerprint() == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_no_page_writes_on_get(route, world, alice, admin_user):
    url = url_of(route, world)
    before = database_fingerprint()
    for user in (alice, admin_user):
        for headers in ({}, {"HX-Request": "true"}):
            for method in ("get", "head"):
                response = getattr(client_for(user), method)(url, headers=headers)
                assert response.status_code < 500
    assert database_fingerprint() == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_post_needs_a_csrf_token(route, world, alice):
    url = url_of(route, world)
    client = client_for(alice, enforce_csrf_checks=True)
    before = database_fingerprint()
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(url, headers=headers)
        assert response.status_code == 403, response.status_code
        assert b"CSRF" in response.content
    assert database_fingerprint() == before


def test_htmx_requests_carry_the_token_the_page_gives_them(world, alice):
    """base.html puts the token in hx-headers; htmx sends it as X-CSRFToken."""
    client = client_for(alice, enforce_csrf_checks=True)
    page = client.get(f"/segments/{world.segment.pk}/").content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page)[1]
    response = client.post(
        f"/segments/{world.segment.pk}/refresh/",
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 200


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|<[^>]+\sstyle\s*=", re.IGNORECASE)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_pages_need_nothing_the_content_security_policy_blocks(route, world, alice):
    """The CSP allows scripts and styles from our own static files only: an
    inline script, event handler or style would silently not apply."""
    for headers in ({}, {"HX-Request": "true"}):
        response = client_for(alice).get(url_of(route, world), headers=headers)
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.search(html)[0]
            assert not INLINE_HANDLER.search(html), INLINE_HANDLER.search(html)[0]
            assert not INLINE_STYLE.search(html), INLINE_STYLE.search(html)[0]
            policy = response["Content-Security-Policy"]
            assert "style-src 'self';" in policy and "unsafe-inline" not in policy


def test_only_django_admin_pages_allow_inline_styles(admin_client):
    assert (
        "style-src 'self' 'unsafe-inline'" in admin_client.get("/admin/")["Content-Security-Policy"]
    )
    assert "unsafe-inline" not in admin_client.get("/segments/")["Content-Security-Policy"]


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_page_for_a_logged_in_user_is_private_and_never_stored(route, world, alice):
    """Pages show people: no shared or browser cache may keep them, and an
    htmx partial at a page's URL must not be mistaken for the page."""
    for headers in ({}, {"HX-Request": "true"}):
        response = client_for(alice).get(url_of(route, world), headers=headers)
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= cache_control, response["Cache-Control"]
        assert "HX-Request" in response["Vary"], response.get("Vary")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_head_is_answered_wherever_get_is(route, world, admin_user):
    client = client_for(admin_user)
    url = url_of(route, world)
    get, head = client.get(url), client.head(url)
    if get.status_code != 405:
        assert head.status_code == get.status_code, (get.status_code, head.status_code)
        assert b"".join(head) == b""
    else:
        assert head.status_code == 405


# Hostile values, as they arrive in a query string (already percent-encoded):
# NUL, Unicode digits that Python's int() reads (² fails, ١٢ is 12), the
# UTF-8 bytes of a lone surrogate (decoded as replacement characters), a
# number with more digits than int() accepts, a float past the double
# range, NaN, a negative, and a very long string.
HOSTILE_VALUES = {
    "nul": "a%00b",
    "superscript-two": "%C2%B2",
    "arabic-twelve": "%D9%A1%D9%A2",
    "surrogate-bytes": "%ED%A0%80",
    "5000-digits": "9" * 5000,
    "1e400": "1e400",
    "nan": "NaN",
    "minus-one": "-1",
    "long": "x" * 6000,
}
# Every query parameter a dashboard page reads. A page that reads one not
# listed here fails test_the_walk_knows_every_query_parameter, so a new
# parameter is checked against the values above as soon as it exists.
QUERY_PARAMETERS = ("q", "page", "after", "before", "older", "sort", "status", "polling", "shown")


@pytest.fixture
def parameters_read(monkeypatch):
    """The names a view looks up in any QueryDict while the fixture lives."""
    from django.http import QueryDict
    from django.utils.datastructures import MultiValueDict

    names = set()

    def recording(method):
        def wrapper(self, key, *args, **kwargs):
            names.add(key)
            return method(self, key, *args, **kwargs)

        return wrapper

    for name in ("get", "__getitem__", "getlist", "__contains__"):
        monkeypatch.setattr(QueryDict, name, recording(getattr(MultiValueDict, name)))
    return names


def _get_routes():
    return [route for route in ROUTES if not route.name.startswith("segments:builder")]


def test_the_walk_knows_every_query_parameter(world, admin_user, parameters_read):
    client = client_for(admin_user)
    for route in _get_routes():
        url = url_of(route, world)
        for headers in ({}, {"HX-Request": "true"}, {"HX-Request": "true", "HX-Target": "x"}):
            client.get(url + "?q=a&after=1&page=2&older=x&polling=1", headers=headers)
    assert {"q", "after", "page", "older", "polling"} <= parameters_read  # the recorder works
    assert parameters_read <= set(QUERY_PARAMETERS) | {"csrfmiddlewaretoken"}, parameters_read


def test_no_page_answers_500_to_hostile_query_values(world, admin_user):
    """Every hostile value in every parameter, one at a time (so one refused
    parameter cannot hide another), on every GET route, for a user who may
    see everything; and each value in all parameters at once as htmx
    requests (the partials, the members table's included). One test for
    every route, so the world is built once: about 2,400 requests, 20-30 s
    on 2 busy CPUs."""
    client = client_for(admin_user)
    client.raise_request_exception = False
    failures = []
    before = database_fingerprint()
    for route in _get_routes():
        url = url_of(route, world)
        for label, value in HOSTILE_VALUES.items():
            for parameter in QUERY_PARAMETERS:
                response = client.get(f"{url}?{parameter}={value}")
                if response.status_code >= 500:
                    failures.append((str(route), parameter, label, response.status_code))
            every = "&".join(f"{parameter}={value}" for parameter in QUERY_PARAMETERS)
            for target in ("", "members"):
                headers = {"HX-Request": "true", "HX-Target": target}
                response = client.get(f"{url}?{every}", headers=headers)
                if response.status_code >= 500:
                    failures.append(
                        (str(route), f"all, htmx {target}", label, response.status_code)
                    )
    assert not failures, failures
    assert database_fingerprint() == before
