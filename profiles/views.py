from contextlib import suppress
from datetime import datetime
from functools import partial
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.shortcuts import render
from django.views.decorators.http import require_safe

from profiles import selectors
from profiles.errors import ProfileNotFound
from profiles.forms import ProfileSearchForm
from profiles.models import Profile
from vero_admin.access import require_perms
from vero_admin.pagination import (
    SEARCH_COUNT_CAP,
    KeysetPage,
    Total,
    count_capped,
    keyset_page,
    page_number,
    table_total,
)
from vero_admin.query import BadQuery

PER_PAGE = 50


@require_safe
@login_required
def profile_list(request: HttpRequest):
    require_perms(request.user, "profiles.view_profile")
    form = ProfileSearchForm.from_request(request)
    context = form.search_context()
    if not form.is_valid():
        profiles, total = Profile.objects.none(), None
    elif context["query"]:
        profiles = selectors.profile_search(query=context["query"])
        total = partial(count_capped, profiles, cap=SEARCH_COUNT_CAP)
    else:
        profiles, total = Profile.objects.all(), table_total(Profile)
    context["page"] = keyset_page(
        profiles, request, per_page=PER_PAGE, total=total, noun="profiles"
    )
    return render(request, "profiles/list.html", context, status=200 if form.is_valid() else 400)


@require_safe
@login_required
def profile_detail(request: HttpRequest, pk: int):
    require_perms(request.user, "profiles.view_profile")
    profile = _get_profile(pk)
    events = list(selectors.profile_recent_events(profile=profile, limit=PER_PAGE + 1))
    more = len(events) > PER_PAGE
    older = (events[PER_PAGE - 1].occurred_at, events[PER_PAGE - 1].pk) if more else None
    return render(
        request,
        "profiles/detail.html",
        {
            "profile": profile,
            "attributes": readable(profile.properties),
            "preferences": selectors.profile_preferences(profile=profile),
            "events": [(event, readable(event.properties)) for event in events[:PER_PAGE]],
            "more_events": more,
            "older_query": urlencode({"older": _format_older(older), "page": 2}) if more else "",
            "event_count": selectors.profile_event_count(profile=profile) if more else len(events),
            "memberships": selectors.profile_segments(profile=profile),
            "messages_received": selectors.profile_messages(profile=profile),
        },
    )


@require_safe
@login_required
def profile_events(request: HttpRequest, pk: int):
    """Every event of a person, newest first, 50 a page (the profile page
    shows the first 50)."""
    require_perms(request.user, "profiles.view_profile")
    profile = _get_profile(pk)
    older_than = _parse_older(request.GET.get("older", ""))
    result = selectors.profile_events_page(profile=profile, older_than=older_than, limit=PER_PAGE)
    page = KeysetPage(
        [(event, readable(event.properties)) for event in result.events],
        page_number(request) if older_than else 1,
        PER_PAGE,
        request.GET,
        total=Total(selectors.profile_event_count(profile=profile)),
        noun="events",
        extra_next={"older": _format_older(result.older)} if result.older else {},
    )
    return render(request, "profiles/events.html", {"profile": profile, "page": page})


def _format_older(cursor: tuple[datetime, int]) -> str:
    occurred_at, pk = cursor
    return f"{occurred_at.isoformat()}~{pk}"


def _parse_older(raw: str) -> tuple[datetime, int] | None:
    """The cursor of an older page; None (the first page) when there is
    none; 400 when it is not one."""
    if raw == "":
        return None
    moment, _, pk = raw.partition("~")
    occurred_at = None
    if pk.isascii() and pk.isdigit() and len(pk) <= 19 and len(moment) <= 40:
        with suppress(ValueError):
            occurred_at = datetime.fromisoformat(moment)
    if occurred_at is None or occurred_at.tzinfo is None:
        raise BadQuery(
            "The page address is not valid: “older” is not a position in this list of events."
        )
    return occurred_at, int(pk)


def readable(value) -> list[dict]:
    """Attributes or event properties as rows a template can show without
    reading a key as a lookup: ``[{"key", "value", "children"}]``, in the
    order stored. Nested objects and lists become nested rows."""
    if isinstance(value, dict):
        pairs = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return [{"key": "", "value": ", ".join(_scalar(item) for item in value) or "—"}]
        pairs = [(str(number), item) for number, item in enumerate(value, start=1)]
    else:
        return [{"key": "", "value": _scalar(value)}]
    rows = []
    for key, item in pairs:
        if isinstance(item, dict) or (
            isinstance(item, list) and any(isinstance(x, (dict, list)) for x in item)
        ):
            rows.append({"key": key, "value": "", "children": readable(item)})
        elif isinstance(item, list):
            rows.append({"key": key, "value": ", ".join(_scalar(x) for x in item) or "—"})
        else:
            rows.append({"key": key, "value": _scalar(item)})
    return rows


def _scalar(value) -> str:
    if value is None:
        return "—"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _get_profile(pk: int) -> Profile:
    """The profile, or a 404 that can say the profile was deleted (and by which job)."""
    try:
        return Profile.objects.get(pk=pk)
    except Profile.DoesNotExist:
        raise ProfileNotFound(pk) from None
