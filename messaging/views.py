from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from messaging import forms, selectors, services
from messaging.models import AudienceChange, Campaign
from vero_admin.access import require_perms
from vero_admin.pagination import MAX_PAGE_NUMBER, keyset_page
from vero_admin.query import query_whole_number


def _get_campaign_for_user(request: HttpRequest, pk: int, *, write: bool = False) -> Campaign:
    """The campaign, or 404 if there is none, or 403 without View (and, to
    change its audience, Edit) access."""
    perms = ["messaging.view_campaign", "messaging.view_message"]
    if write:
        perms.append("messaging.change_campaign")
    require_perms(request.user, *perms)
    return get_object_or_404(Campaign, pk=pk)


@require_safe
@login_required
def campaign_list(request: HttpRequest):
    require_perms(request.user, "messaging.view_campaign")
    paginator = Paginator(selectors.campaign_list(), 25)
    page = paginator.get_page(
        query_whole_number(request, "page", minimum=1, maximum=MAX_PAGE_NUMBER) or 1
    )
    return render(request, "messaging/campaign_list.html", {"page": page})


@require_safe
@login_required
def campaign_detail(request: HttpRequest, pk: int):
    campaign = _get_campaign_for_user(request, pk)
    return _render_detail(request, campaign)


def _render_detail(request, campaign, *, status=200, **audience):
    """The campaign page. Its recipients are people: listing them needs
    profile access too (``profiles.view_profile``); without it the report
    shows the figures only."""
    sends = None
    if request.user.has_perm("profiles.view_profile"):
        sends = keyset_page(selectors.campaign_sends(campaign=campaign), request, per_page=50)
    context = {
        "campaign": campaign,
        "report": selectors.campaign_report(campaign=campaign),
        "page": sends,
        **_audience_context(request, campaign, **audience),
    }
    return render(request, "messaging/campaign_detail.html", context, status=status)


def _audience_context(request, campaign, *, error="", done="", form=None) -> dict:
    audience = selectors.audience_of(campaign=campaign)
    current = {s.pk: "include" for s in audience["included"]}
    current.update({s.pk: "exclude" for s in audience["excluded"]})
    can_edit = campaign.audience_editable and request.user.has_perm("messaging.change_campaign")
    changes = [
        {
            "change": change,
            # One click puts back what an "exclude instead" changed, as long
            # as nobody has changed that segment's place in the audience since.
            "undoable": can_edit
            and change.kind == AudienceChange.Kind.ARCHIVE
            and not change.undone_at
            and change.segment_id is not None
            and current.get(change.segment_id, "") == change.after,
        }
        for change in selectors.audience_changes(campaign=campaign)
    ]
    editable = campaign.audience_editable
    return {
        **audience,
        "reach": selectors.campaign_reach(campaign=campaign) if editable else None,
        "changes": changes,
        "can_edit": can_edit,
        "choices": selectors.audience_segment_choices(campaign=campaign) if can_edit else [],
        "form": form or forms.AudienceAddForm(),
        "error": error,
        "done": done,
    }


def _refused_if_sent(request, campaign) -> HttpResponse | None:
    """A sent campaign keeps the audience it was sent to: 409, nothing changed."""
    if campaign.audience_editable:
        return None
    return _audience_response(
        request, campaign, status=409, error=str(services.CampaignSent(campaign))
    )


def _audience_response(request, campaign, *, status=200, error="", done="", form=None):
    """htmx: the audience section alone. Without JavaScript: the page
    again on an error, a redirect to it after a change."""
    if request.htmx:
        context = {"campaign": campaign}
        context.update(_audience_context(request, campaign, error=error, done=done, form=form))
        return render(request, "messaging/campaign_detail.html#audience", context, status=status)
    if error:
        return _render_detail(request, campaign, status=status, error=error, form=form)
    messages.success(request, done)
    return redirect(campaign)


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def _first_error(form) -> str:
    return next(iter(form.errors.values()))[0]


def _segment(form):
    return selectors.segment_by_id(segment_id=form.cleaned_data["segment"])


@require_POST
@login_required
def campaign_audience_add(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk, write=True)
    form = forms.AudienceAddForm(request.POST)
    if refused := _refused_if_sent(request, campaign):
        return refused
    if not form.is_valid():
        error = _first_error(form)
        return _audience_response(request, campaign, status=400, error=error, form=form)
    segment = _segment(form)
    if segment is None:
        error = "That segment does not exist any more. Nothing was changed."
        return _audience_response(request, campaign, status=400, error=error, form=form)
    try:
        change = services.audience_add(
            campaign=campaign, segment=segment, mode=form.cleaned_data["mode"], user=request.user
        )
    except services.AudienceError as refused:
        return _audience_response(
            request, campaign, status=refused.status, error=str(refused), form=form
        )
    return _audience_response(request, campaign, done=_sentence(change.describe()))


@require_POST
@login_required
def campaign_audience_remove(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk, write=True)
    form = forms.AudienceRemoveForm(request.POST)
    if refused := _refused_if_sent(request, campaign):
        return refused
    segment = _segment(form) if form.is_valid() else None
    if segment is None:
        error = "That segment is not in this campaign's audience. Nothing was changed."
        return _audience_response(request, campaign, status=400, error=error)
    try:
        change = services.audience_remove(campaign=campaign, segment=segment, user=request.user)
    except services.AudienceError as refused:
        return _audience_response(request, campaign, status=refused.status, error=str(refused))
    return _audience_response(request, campaign, done=_sentence(change.describe()))


@require_POST
@login_required
def campaign_audience_undo(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk, write=True)
    form = forms.AudienceUndoForm(request.POST)
    if refused := _refused_if_sent(request, campaign):
        return refused
    if not form.is_valid():
        return _audience_response(request, campaign, status=400, error=_first_error(form))
    try:
        change = services.audience_change_undo(
            campaign=campaign, change_id=form.cleaned_data["change"], user=request.user
        )
    except services.AudienceError as refused:
        return _audience_response(request, campaign, status=refused.status, error=str(refused))
    return _audience_response(request, campaign, done=f"Undone: {change.describe()}.")
