from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from profiles import selectors
from profiles.errors import ProfileNotFound
from profiles.models import Profile
from vero_admin.access import require_perms
from vero_admin.pagination import keyset_page


@require_GET
@login_required
def profile_list(request: HttpRequest):
    require_perms(request.user, "profiles.view_profile")
    query = request.GET.get("q", "").strip()
    page = keyset_page(selectors.profile_search(query=query), request, per_page=50)
    return render(request, "profiles/list.html", {"page": page, "query": query})


@require_GET
@login_required
def profile_detail(request: HttpRequest, pk: int):
    require_perms(request.user, "profiles.view_profile")
    try:
        profile = Profile.objects.get(pk=pk)
    except Profile.DoesNotExist:
        raise ProfileNotFound(pk) from None
    return render(
        request,
        "profiles/detail.html",
        {
            "profile": profile,
            "preferences": selectors.profile_preferences(profile=profile),
            "events": selectors.profile_recent_events(profile=profile),
            "messages_received": selectors.profile_messages(profile=profile),
        },
    )
