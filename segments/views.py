from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from messaging.selectors import segment_campaign_usage
from profiles.forms import ProfileSearchForm, SearchForm
from segments import selectors, services
from segments.builder import builder_blank, builder_from_post, builder_from_rules, builder_tidy
from segments.catalogue import catalogue_get
from segments.counting import builder_preview
from segments.deletion.selectors import (
    deletion_panel_context,
    segment_count_context,
    segments_with_deletion_status,
)
from segments.forms import SegmentForm
from segments.models import Segment, SegmentMembership
from segments.rules import rules_describe
from vero_admin.access import require_perms
from vero_admin.pagination import (
    MAX_PAGE_NUMBER,
    SEARCH_COUNT_CAP,
    Total,
    count_capped,
    keyset_page,
)
from vero_admin.query import query_choice, query_whole_number

SORT_CHOICES = [order + key for key in selectors.SORTS for order in ("", "-")]


def _get_segment_for_user(
    request: HttpRequest, pk: int, *, write: bool = False, delete: bool = False
) -> Segment:
    """The segment, or 404 if there is none, or 403 without View (and Edit,
    or Delete) access."""
    perms = ["segments.view_segment"]
    if write:
        perms.append("segments.change_segment")
    if delete:
        perms.append("segments.delete_segment")
    require_perms(request.user, *perms)
    return get_object_or_404(Segment, pk=pk)


@require_safe
@login_required
def segment_list(request: HttpRequest) -> HttpResponse:
    require_perms(request.user, "segments.view_segment")
    form = SearchForm.from_request(request)
    query = form.query.strip()
    sort = query_choice(request, "sort", SORT_CHOICES, default="name")
    number = query_whole_number(request, "page", minimum=1, maximum=MAX_PAGE_NUMBER)
    segments = segments_with_deletion_status(selectors.segment_search(query=query, sort=sort))
    if not form.is_valid():
        segments = segments.none()
    page = Paginator(segments, 50).get_page(number or 1)
    context = {"page": page, "query": query, "sort": sort, "search_form": form}
    return render(request, "segments/list.html", context, status=200 if form.is_valid() else 400)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@never_cache
def segment_create(request: HttpRequest) -> HttpResponse:
    require_perms(request.user, "segments.view_segment", "segments.add_segment")
    form, preview = _segment_form(request, segment=None)
    if form.is_bound and form.is_valid():
        segment = services.segment_create(**form.cleaned_data, user=request.user)
        messages.success(request, f"Created “{segment.name}”; its members are being counted.")
        return redirect(segment)
    return _render_form(request, form, preview, segment=None)


@require_safe
@login_required
def segment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    segment = _get_segment_for_user(request, pk)
    context = {"segment": segment, **_members_context(request, segment)}
    status = 400 if context["search_invalid"] else 200  # a bad member search
    if request.htmx and request.htmx.target == "members":
        return render(request, "segments/detail.html#members", context, status=status)
    context["rules"] = rules_describe(segment.rules)
    context.update(deletion_panel_context(segment=segment, user=request.user))
    context["campaign_usage"] = segment_campaign_usage(segment=segment)
    return render(request, "segments/detail.html", context, status=status)


def _members_context(request: HttpRequest, segment: Segment) -> dict:
    """The members table: one page by profile id, and no COUNT(*) over the
    whole membership (the page shows the count stored at refresh; a search
    counts its matches up to a cap).

    Members are people: listing or searching them needs profile access
    (``profiles.view_profile``), so segment access alone shows the count
    and cannot probe whether an email is a profile (no search is run)."""
    if not _may_see_profiles(request):
        return {"members_hidden": True, "search_invalid": False}
    form = ProfileSearchForm.from_request(request)
    context = form.search_context()
    query = context["query"]
    if not form.is_valid():
        members, total = SegmentMembership.objects.none(), None
    elif query:
        members = selectors.segment_members(segment=segment, query=query)
        total = partial(count_capped, members, cap=SEARCH_COUNT_CAP)
    else:
        members = selectors.segment_members(segment=segment)
        total = None if segment.member_count is None else Total(segment.member_count)
    page = keyset_page(members, request, key="profile_id", total=total, noun="members")
    non_member = None
    if query and not page.object_list and page.is_first:
        non_member = selectors.segment_non_member(segment=segment, query=query)
    exact = context["exact_match"]
    if exact is not None:
        context["exact_in_segment"] = SegmentMembership.objects.filter(
            segment=segment, profile=exact
        ).exists()
    return {**context, "members": page, "non_member": non_member}


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@never_cache
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    segment = _get_segment_for_user(request, pk, write=True)
    form, preview = _segment_form(request, segment=segment)
    if form.is_bound and form.is_valid():
        services.segment_update(segment=segment, **form.cleaned_data, user=request.user)
        messages.success(request, f"Saved “{segment.name}”.")
        return redirect(segment)
    return _render_form(request, form, preview, segment=segment)


def _segment_form(request: HttpRequest, *, segment: Segment | None):
    """The form, bound when it is being saved. The builder's other buttons
    (add, remove, move a row, count, open JSON as rows) post the same form
    without JavaScript: the page comes back changed, with counts, unsaved."""
    catalogue = catalogue_get()
    if request.method != "POST":
        if segment is None:
            builder = builder_blank(catalogue=catalogue).hush_empty_rows()
        else:
            builder = builder_from_rules(segment.rules, catalogue=catalogue)
        return SegmentForm(builder=builder, segment=segment), None
    builder = builder_from_post(request.POST, catalogue=catalogue)
    action = request.POST.get("action", "save")
    if action == "save":
        return SegmentForm(request.POST, builder=builder, segment=segment), None
    builder_tidy(builder.apply(action)).hush_empty_rows()
    typed = {
        "name": request.POST.get("name", ""),
        "description": request.POST.get("description", ""),
    }
    form = SegmentForm(initial=typed, builder=builder, segment=segment)
    return form, builder_preview(builder, sample=_may_see_profiles(request))


def _render_form(request, form, preview, *, segment):
    context = {"form": form, "builder": form.builder, "preview": preview, "segment": segment}
    status = 400 if form.is_bound and form.errors else 200  # a save refused: nothing written
    return render(request, "segments/form.html", context, status=status)


def _may_see_profiles(request: HttpRequest) -> bool:
    return request.user.has_perm("profiles.view_profile")


def _require_builder_access(user) -> None:
    """Editors only: the builder shows members' personal data to whoever may
    change (or create) segments."""
    require_perms(user, "segments.view_segment")
    if not (user.has_perm("segments.change_segment") or user.has_perm("segments.add_segment")):
        raise PermissionDenied


@require_POST
@login_required
@never_cache
def segment_builder(request: HttpRequest) -> HttpResponse:
    """The builder re-rendered after a change of its shape (htmx): a row
    added, removed, moved, or given another type or operator."""
    _require_builder_access(request.user)
    builder = builder_from_post(request.POST, catalogue=catalogue_get())
    builder_tidy(builder.apply(request.POST.get("action", ""))).hush_empty_rows()
    context = {
        "builder": builder,
        "preview": builder_preview(builder, sample=_may_see_profiles(request)),
        "oob": True,
    }
    return render(request, "segments/_builder.html", context)


@require_POST
@login_required
@never_cache
def segment_builder_count(request: HttpRequest) -> HttpResponse:
    """The counts, plain words and sample for the rows as they are (htmx,
    while typing); the rows themselves are left alone."""
    _require_builder_access(request.user)
    builder = builder_from_post(request.POST, catalogue=catalogue_get()).hush_empty_rows()
    context = {
        "builder": builder,
        "preview": builder_preview(builder, sample=_may_see_profiles(request)),
        "oob": True,
    }
    return render(request, "segments/_builder.html#count", context)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete the segment definition; its profiles stay."""
    segment = _get_segment_for_user(request, pk, delete=True)
    error, status = "", 200
    if request.method == "POST":
        name = segment.name
        try:
            services.segment_delete(segment=segment)
        except services.SegmentBusy as busy:
            error, status = str(busy), 409
        else:
            messages.success(request, f"Deleted the segment “{name}”. Its profiles were kept.")
            return redirect("segments:list")
    context = {"segment": segment, **segment_campaign_usage(segment=segment), "error": error}
    return render(request, "segments/delete.html", context, status=status)


@require_POST
@login_required
def segment_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    segment = _get_segment_for_user(request, pk, write=True)
    services.segment_request_refresh(segment=segment)
    if not request.htmx:
        messages.info(request, f"Refreshing “{segment.name}”.")
        return redirect(segment)
    # The task may already have run (Q_CLUSTER["sync"], or a fast worker).
    segment.refresh_from_db()
    return _refresh_status(request, segment)


@require_safe
@login_required
def segment_refresh_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The count and refresh state; htmx polls it while a refresh runs.

    A poll gets 204 (nothing to swap) until the refresh is over, so the live
    region changes once, when there is news, instead of every two seconds.
    """
    segment = _get_segment_for_user(request, pk)
    if request.htmx and segment.is_refreshing:
        return HttpResponse(status=204)
    return _refresh_status(request, segment)


def _refresh_status(request: HttpRequest, segment: Segment) -> HttpResponse:
    context = {"segment": segment, **segment_count_context(segment=segment)}
    response = render(request, "segments/detail.html#refresh-status", context)
    if request.htmx and not segment.is_refreshing:
        # Done: the members table listens for this and reloads itself.
        response["HX-Trigger"] = "segment-refreshed"
    return response
