"""Archive instead of deleting: exclude a segment from every draft and
scheduled campaign that would reach its people, in one confirmed step.

Which campaigns: those not sent yet that include the segment, or include
another segment sharing at least one member with it (as of the last
refreshes), and do not exclude it already (``archive_candidates``). Each
exclusion is recorded on its campaign as an audience change, and undone
from the campaign's page with one click. No profile is touched.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_http_methods

from messaging import selectors as campaign_selectors
from messaging import services as campaign_services
from segments.models import Segment
from vero_admin.access import require_perms


class ArchiveInsteadForm(forms.Form):
    campaigns = forms.TypedMultipleChoiceField(
        coerce=int,
        error_messages={
            "required": "Choose at least one campaign. Nothing was changed.",
            "invalid_choice": "A campaign in the list was sent or changed meanwhile: "
            "review the list again. Nothing was changed.",
        },
    )

    def __init__(self, *args, candidates, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["campaigns"].choices = [(c.pk, c.name) for c in candidates]


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def archive_instead(request: HttpRequest, pk: int) -> HttpResponse:
    require_perms(
        request.user,
        "segments.view_segment",
        "messaging.view_campaign",
        "messaging.change_campaign",
    )
    segment = get_object_or_404(Segment, pk=pk)
    candidates, exact = campaign_selectors.archive_candidates(segment=segment)
    data = request.POST if request.method == "POST" else None
    form = ArchiveInsteadForm(data, candidates=candidates)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changes = campaign_services.audience_exclude_everywhere(
                segment=segment, campaign_ids=form.cleaned_data["campaigns"], user=request.user
            )
            chosen = len(form.cleaned_data["campaigns"])
            if not changes:
                # Every chosen campaign was sent (or its audience changed)
                # between the list and the lock: say so, not "from 0".
                candidates, exact = campaign_selectors.archive_candidates(segment=segment)
                context = {
                    "segment": segment,
                    "candidates": candidates,
                    "exact": exact,
                    "form": ArchiveInsteadForm(candidates=candidates),
                    "refused": (
                        f"Nothing was changed: the campaign{pluralize(chosen)} you chose "
                        f"{'was' if chosen == 1 else 'were'} sent or changed meanwhile. "
                        "Review the list again."
                    ),
                }
                return render(request, "segments/archive_instead.html", context, status=409)
            names = ", ".join(f"“{change.campaign.name}”" for change in changes)
            left = chosen - len(changes)
            messages.success(
                request,
                f"Excluded “{segment.name}” from {len(changes)} campaign"
                f"{'' if len(changes) == 1 else 's'}: {names}. No profile was deleted; "
                "undo it from each campaign's page."
                + (
                    f" {left} of the campaigns you chose {'was' if left == 1 else 'were'} "
                    "sent or changed meanwhile and left alone."
                    if left
                    else ""
                ),
            )
            return redirect(segment)
        status = 400
    context = {"segment": segment, "candidates": candidates, "exact": exact, "form": form}
    return render(request, "segments/archive_instead.html", context, status=status)
