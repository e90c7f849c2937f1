"""The deletions page: every deletion job across segments, newest first.

View access is enough (``segments.view_segment``): it shows what the segment
pages already show, job by job, and no person. While a job on the page is in
progress, htmx polls the page's table partial, which stops polling once
nothing on it runs.
"""

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from segments.deletion.selectors import (
    HISTORY_PAGE_SIZE,
    HISTORY_STATUSES,
    deletion_history,
    user_can_delete_profiles,
)
from segments.models import DeletionJob
from vero_admin.access import require_perms

STATUS_CHOICES = [("", "Any status")] + [
    (key, label) for key, (_, label) in HISTORY_STATUSES.items()
]


class DeletionHistoryFilter(forms.Form):
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=STATUS_CHOICES,
        error_messages={
            "invalid_choice": "“%(value)s” is not a status to filter by; showing every deletion."
        },
    )
    before = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        widget=forms.HiddenInput,
        error_messages={
            "invalid": "That page address is not valid; showing the newest deletions.",
            "min_value": "That page address is not valid; showing the newest deletions.",
            "max_value": "That page address is not valid; showing the newest deletions.",
        },
    )

    def clean_before(self):
        """ASCII digits only: IntegerField reads "١٢" as 12."""
        raw = self.data.get("before", "")
        if raw and not (raw.isascii() and raw.isdigit()):
            raise forms.ValidationError(
                self.fields["before"].error_messages["invalid"], code="invalid"
            )
        return self.cleaned_data["before"]


@require_safe
@login_required
def deletion_history_page(request: HttpRequest) -> HttpResponse:
    """A bad filter or page value answers 400 with the reason, and the first
    page of every deletion, so the page is still of use."""
    require_perms(request.user, "segments.view_segment")
    form = DeletionHistoryFilter(request.GET)
    valid = form.is_valid()
    status = form.cleaned_data.get("status", "") if valid else ""
    before = form.cleaned_data.get("before") if valid else None
    jobs, next_before = deletion_history(status=status, before=before)
    context = {
        **_where(jobs, status=status, is_first=before is None),
        "form": form,
        "jobs": jobs,
        "status": status,
        "status_label": HISTORY_STATUSES[status][1] if status else "",
        "next_before": next_before,
        "is_first": before is None,
        "running": sum(1 for job in jobs if job.is_active),
        # Receipts are for those who may delete profiles (Editors).
        "can_delete_profiles": user_can_delete_profiles(request.user),
        "errors": [error for errors in form.errors.values() for error in errors],
    }
    template = "segments/deletions.html"
    if request.htmx and request.htmx.target == "deletion-jobs":
        template += "#jobs"
    return render(request, template, context, status=200 if valid else 400)


def _where(jobs: list, *, status: str, is_first: bool) -> dict:
    """Where the page is ("Deletions 51-100 of 240") and the cursor of the
    newer page. The jobs table is small (one row per deletion), so the total
    and the position are exact counts: one query on the first page, three on
    the others."""
    matching = DeletionJob.objects.all()
    if status:
        matching = matching.filter(status__in=HISTORY_STATUSES[status][0])
    total = matching.count()
    newer_count, newer_before = 0, None
    if jobs and not is_first:
        newer = matching.filter(pk__gt=jobs[0].pk)
        newer_count = newer.count()
        # The newer page ends just before the job HISTORY_PAGE_SIZE above it.
        beyond = newer.order_by("pk").values_list("pk", flat=True)[
            HISTORY_PAGE_SIZE : HISTORY_PAGE_SIZE + 1
        ]
        newer_before = next(iter(beyond), None)
    start = newer_count + 1 if jobs else 0
    return {
        "total": total,
        "start_index": start,
        "end_index": start + len(jobs) - 1 if jobs else 0,
        "page_number": newer_count // HISTORY_PAGE_SIZE + 1,
        "num_pages": max(1, -(-total // HISTORY_PAGE_SIZE)),
        "newer_before": newer_before,
    }
