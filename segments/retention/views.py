"""The retention schedule's pages: create one, see it (with its dry run),
pause, resume and delete it.

Viewers see a schedule; only those who may delete a segment's profiles
(Editors) create or change one. The server checks both on every request.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from segments.deletion.selectors import user_can_delete_profiles
from segments.models import RetentionSchedule, Segment
from segments.retention import services as retention
from segments.retention.forms import RetentionScheduleForm
from segments.retention.selectors import retention_page_context
from vero_admin.access import require_perms


def _get_segment(request: HttpRequest, pk: int, *, write: bool) -> Segment:
    """The segment, or 404; 403 without View access (and, to write, without
    the access a manual deletion needs)."""
    if write:
        if not user_can_delete_profiles(request.user):
            raise PermissionDenied
    else:
        require_perms(request.user, "segments.view_segment")
    return get_object_or_404(Segment, pk=pk)


def _get_schedule(request: HttpRequest, pk: int, *, write: bool) -> RetentionSchedule:
    segment = _get_segment(request, pk, write=write)
    return get_object_or_404(
        RetentionSchedule.objects.select_related("segment", "last_job"), segment=segment
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@never_cache
def retention_create(request: HttpRequest, pk: int) -> HttpResponse:
    segment = _get_segment(request, pk, write=True)
    if RetentionSchedule.objects.filter(segment=segment).exists():
        messages.info(request, "This segment already has a retention schedule; here it is.")
        return redirect("segments:retention", pk=segment.pk)
    if request.method != "POST":
        form = RetentionScheduleForm(segment=segment, initial=_initial(segment))
        return render(request, "segments/retention_form.html", {"segment": segment, "form": form})
    form = RetentionScheduleForm(request.POST, segment=segment)
    error = ""
    if form.is_valid():
        try:
            schedule = retention.retention_create(
                segment=segment, user=request.user, **form.cleaned_data
            )
        except retention.RetentionRefused as refused:
            error = str(refused)
        else:
            messages.success(
                request,
                f"Scheduled: {schedule.when_phrase}, the members of {segment.name} "
                "are deleted automatically. The first run is shown below.",
            )
            return redirect("segments:retention", pk=segment.pk)
    context = {"segment": segment, "form": form, "form_error": error}
    return render(request, "segments/retention_form.html", context, status=400)


def _initial(segment: Segment) -> dict:
    # A limit just above today's size: a sudden jump stops the run.
    current = segment.member_count or 0
    return {"max_profiles": max(100, current + current // 10)}


@require_safe
@login_required
def retention_detail(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = _get_schedule(request, pk, write=False)
    context = retention_page_context(schedule=schedule, user=request.user)
    return render(request, "segments/retention.html", context)


def _act(request: HttpRequest, pk: int, action, done: str) -> HttpResponse:
    schedule = _get_schedule(request, pk, write=True)
    try:
        action(schedule=schedule, user=request.user)
    except retention.RetentionRefused as refused:
        messages.error(request, str(refused))
        context = retention_page_context(schedule=schedule, user=request.user)
        return render(request, "segments/retention.html", context, status=409)
    messages.success(request, done)
    return redirect("segments:retention", pk=pk)


@require_POST
@login_required
def retention_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, retention.retention_pause, "Paused. Nothing runs until you resume.")


@require_POST
@login_required
def retention_resume(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = _get_schedule(request, pk, write=True)
    typed_name = request.POST.get("typed_name", "")
    try:
        retention.retention_resume(schedule=schedule, user=request.user, typed_name=typed_name)
    except retention.RetentionNotConfirmed as refused:
        context = retention_page_context(schedule=schedule, user=request.user)
        context.update(resume_error=str(refused), resume_typed=typed_name)
        return render(request, "segments/retention.html", context, status=400)
    except retention.RetentionRefused as refused:
        messages.error(request, str(refused))
        context = retention_page_context(schedule=schedule, user=request.user)
        return render(request, "segments/retention.html", context, status=409)
    messages.success(
        request,
        "Resumed. You are now this schedule's owner: its runs delete in your name and its "
        "emails come to you.",
    )
    return redirect("segments:retention", pk=pk)


@require_POST
@login_required
def retention_delete(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = _get_schedule(request, pk, write=True)
    try:
        retention.retention_delete(schedule=schedule, user=request.user)
    except retention.RetentionRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request,
            "Schedule deleted: this segment's members are no longer deleted automatically.",
        )
    return redirect(schedule.segment)
