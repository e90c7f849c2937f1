"""Pages and htmx endpoints of the segment deletion flow.

Every endpoint checks View and Edit access on the server, whatever the page
showed; writes are POST only and CSRF-protected like every other form.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from segments.deletion import services as deletion
from segments.deletion.forms import DeleteProfilesForm
from segments.deletion.receipts import (
    receipt_chunks,
    receipt_entry_count,
    receipt_path,
    receipt_rules,
    receipt_rules_describe,
)
from segments.deletion.selectors import (
    deletion_dialog_context,
    deletion_panel_context,
    deletion_progress_context,
    deletion_progress_state,
    segment_membership_token,
    user_can_delete_profiles,
)
from segments.models import DeletionJob, Segment


def _get_segment_for_deletion(request: HttpRequest, pk: int) -> Segment:
    """The segment, or 404; 403 unless the user may delete its profiles."""
    if not user_can_delete_profiles(request.user):
        raise PermissionDenied
    return get_object_or_404(Segment, pk=pk)


def _get_job(request: HttpRequest, segment_pk: int, job_pk: int, *, write: bool) -> DeletionJob:
    if write:
        if not user_can_delete_profiles(request.user):
            raise PermissionDenied
    elif not request.user.has_perm("segments.view_segment"):
        raise PermissionDenied
    return get_object_or_404(
        DeletionJob.objects.select_related("segment"), pk=job_pk, segment_id=segment_pk
    )


def _render_dialog(request, segment, form, *, status=200, current_count=None, error=""):
    context = {
        "segment": segment,
        "form": form,
        "dialog_error": error,
        **deletion_dialog_context(segment=segment, current_count=current_count),
    }
    template = "segments/_delete_dialog.html" if request.htmx else "segments/delete_profiles.html"
    return render(request, template, context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def delete_profiles(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation dialog (htmx) or page. POST: confirm and start."""
    segment = _get_segment_for_deletion(request, pk)
    active = deletion.deletion_active_job(segment=segment)
    if request.method != "POST":  # GET, or HEAD
        if active:
            return _redirect_to_segment(request, segment)
        if DeletionJob.objects.unfinished().filter(segment=segment).exists():
            messages.info(
                request,
                "An earlier deletion of this segment stopped part-way. Resume it or close it "
                "before starting a new one.",
            )
            return _redirect_to_segment(request, segment)
        return _render_dialog(request, segment, _fresh_form(segment))

    form = DeleteProfilesForm(request.POST, segment=segment)
    if not form.is_valid():
        return _render_dialog(request, segment, form, status=400)
    try:
        result = deletion.deletion_start(
            segment=segment,
            user=request.user,
            typed_name=form.cleaned_data["typed_name"],
            expected_count=form.cleaned_data["expected_count"],
            membership_token=form.cleaned_data["membership_token"],
            suppress=form.cleaned_data["suppress"],
        )
    except deletion.CountChanged as exc:
        # Ask again, for the membership as it is now: the new count and stamp
        # go in the form, so confirming again confirms what is shown now. The
        # name typed is kept (it was checked to match): the alert and the new
        # number are what the user must look at, not retyping.
        segment.refresh_from_db()
        form = _fresh_form(segment, count=exc.current_count, typed_name=segment.name)
        return _render_dialog(
            request, segment, form, status=409, current_count=exc.current_count, error=str(exc)
        )
    except deletion.NameMismatch as exc:
        form.add_error("typed_name", str(exc))
        return _render_dialog(request, segment, form, status=400)
    except deletion.DeletionRefused as exc:
        return _render_dialog(request, segment, form, status=400, error=str(exc))
    if request.htmx:
        # No reload: the dialog goes, the panel swaps in with focus on its
        # status, and the live region announces the start.
        segment.refresh_from_db()
        return _panel_response(request, segment, take_focus=True, close_dialog=True)
    if result.created:
        messages.success(
            request,
            f"Deleting {result.job.total:,} profiles from {segment.name}. "
            "You can leave this page; the deletion goes on.",
        )
    else:
        messages.info(request, "A deletion of this segment is already running; here it is.")
    return _redirect_to_segment(request, segment)


def _fresh_form(
    segment: Segment, *, count: int | None = None, typed_name: str = ""
) -> DeleteProfilesForm:
    initial = {
        "expected_count": segment.member_count or 0 if count is None else count,
        "membership_token": segment_membership_token(segment),
        "typed_name": typed_name,
    }
    return DeleteProfilesForm(segment=segment, initial=initial)


def _panel_response(request, segment, *, take_focus=False, close_dialog=False):
    """The deletion panel (progress card, cancel dialog, history) for an htmx
    swap in place of the page's, with the parts of the page that a deletion
    changes swapped out of band: the count line and the ••• menu's item.
    ``close_dialog`` empties the dialog slot (the confirmation is done);
    ``take_focus`` moves focus to the new status heading."""
    context = {
        "segment": segment,
        **deletion_panel_context(segment=segment, user=request.user),
        "take_focus": take_focus,
    }
    parts = [render_to_string("segments/_deletion_panel.html#panel", context, request)]
    oob = {**context, "oob": True}
    parts.append(render_to_string("segments/detail.html#refresh-status", oob, request))
    parts.append(render_to_string("segments/_deletion_menu_items.html", oob, request))
    if close_dialog:
        parts.append('<div id="delete-dialog-slot" hx-swap-oob="true"></div>')
    response = HttpResponse("".join(parts))
    response["HX-Retarget"] = "#deletion-panel"
    response["HX-Reswap"] = "outerHTML"
    return response


def _redirect_to_segment(request, segment):
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = segment.get_absolute_url()
        return response
    return redirect(segment.get_absolute_url() + "#deletion", permanent=False)


@require_safe
@login_required
def deletion_progress(request: HttpRequest, pk: int, job_pk: int) -> HttpResponse:
    """The progress partial; htmx polls it while the job is active.

    A poll swaps as little as it can, so that focus and a screen reader's
    place stay put: only the numbers while the card's state (``shown``) is
    the same, the whole card when its heading or buttons change, and at the
    end the whole panel plus the count line and the menu item (out of band),
    and the members table reloads itself (``segment-refreshed``).
    """
    job = _get_job(request, pk, job_pk, write=False)
    polling = request.htmx and request.GET.get("polling")
    if polling and not job.is_active:
        response = _panel_response(request, job.segment)
        response["HX-Trigger"] = "segment-refreshed"
        return response
    context = {
        "segment": job.segment,
        **deletion_panel_context(segment=job.segment, user=request.user),
        "job": job,
        **deletion_progress_context(job=job),
    }
    if not polling:
        return render(request, "segments/_deletion_panel.html#progress", context)
    if request.GET.get("shown") == deletion_progress_state(job):
        return render(request, "segments/_deletion_panel.html#progress-body", context)
    # The heading changed (started, stopping): the card, and the history's
    # status column out of band.
    card = render_to_string("segments/_deletion_panel.html#progress", context, request)
    history = render_to_string(
        "segments/_deletion_panel.html#history", {**context, "oob": True}, request
    )
    response = HttpResponse(card + history)
    response["HX-Retarget"] = "#deletion"
    response["HX-Reswap"] = "outerHTML"
    return response


@require_POST
@login_required
def deletion_cancel(request: HttpRequest, pk: int, job_pk: int) -> HttpResponse:
    job = _get_job(request, pk, job_pk, write=True)
    try:
        deletion.deletion_cancel(job=job, user=request.user)
        messages.info(request, "Stopping the deletion after its current batch.")
    except deletion.DeletionRefused as exc:
        messages.error(request, str(exc))
    return _redirect_to_segment(request, job.segment)


@require_POST
@login_required
def deletion_resume(request: HttpRequest, pk: int, job_pk: int) -> HttpResponse:
    job = _get_job(request, pk, job_pk, write=True)
    try:
        deletion.deletion_resume(job=job, user=request.user)
        messages.success(request, "Resumed the deletion where it stopped.")
    except deletion.DeletionRefused as exc:
        messages.error(request, str(exc))
    return _redirect_to_segment(request, job.segment)


@require_POST
@login_required
def deletion_close(request: HttpRequest, pk: int, job_pk: int) -> HttpResponse:
    job = _get_job(request, pk, job_pk, write=True)
    try:
        job = deletion.deletion_close(job=job, user=request.user)
        messages.success(
            request,
            f"Closed the deletion. The other {job.remaining:,} profile"
            f"{'s' if job.remaining != 1 else ''} it was confirmed for are kept.",
        )
    except deletion.DeletionRefused as exc:
        messages.error(request, str(exc))
    return _redirect_to_segment(request, job.segment)


# --- Receipts ----------------------------------------------------------------


def _get_ended_job_for_receipt(request: HttpRequest, job_pk: int):
    """The job (404 if unknown; 403 unless the user may delete profiles), or
    a 409 page while it is still running: a receipt describes an ending."""
    if not user_can_delete_profiles(request.user):
        raise PermissionDenied
    job = get_object_or_404(DeletionJob.objects.select_related("segment"), pk=job_pk)
    if job.is_active:
        response = render(
            request,
            "segments/deletion_receipt.html",
            {"job": job, "not_ended": True},
            status=409,
        )
        return job, response
    return job, None


@require_safe
@login_required
def deletion_receipt(request: HttpRequest, job_pk: int) -> HttpResponse:
    """The receipt of an ended deletion, readable, with its JSON download."""
    job, refusal = _get_ended_job_for_receipt(request, job_pk)
    if refusal:
        return refusal
    context = {
        "job": job,
        "rules": receipt_rules_describe(receipt_rules(job.rules_at_confirmation)),
        "entry_count": receipt_entry_count(job.pk),
    }
    return render(request, "segments/deletion_receipt.html", context)


@require_safe
@login_required
def deletion_receipt_json(request: HttpRequest, job_pk: int) -> HttpResponse:
    """The receipt as a JSON file, streamed: memory stays flat at any size."""
    job, refusal = _get_ended_job_for_receipt(request, job_pk)
    if refusal:
        return refusal
    response = StreamingHttpResponse(
        receipt_chunks(job), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{receipt_path(job.pk).name}"'
    response["Cache-Control"] = "no-store"
    return response
