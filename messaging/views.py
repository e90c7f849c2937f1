from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from messaging import selectors
from messaging.models import Campaign
from vero_admin.access import require_perms
from vero_admin.pagination import keyset_page


@require_GET
@login_required
def campaign_list(request: HttpRequest):
    require_perms(request.user, "messaging.view_campaign")
    paginator = Paginator(selectors.campaign_list(), 25)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "messaging/campaign_list.html", {"page": page})


@require_GET
@login_required
def campaign_detail(request: HttpRequest, pk: int):
    require_perms(request.user, "messaging.view_campaign", "messaging.view_message")
    campaign = get_object_or_404(Campaign.objects.select_related("audience"), pk=pk)
    sends = keyset_page(selectors.campaign_sends(campaign=campaign), request, per_page=50)
    return render(
        request,
        "messaging/campaign_detail.html",
        {
            "campaign": campaign,
            "report": selectors.campaign_report(campaign=campaign),
            "excluded": campaign.excluded_segments.all(),
            "page": sends,
        },
    )
