from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from segments.models import Segment
from vero_admin.access import require_perms


def _get_segment_for_user(request: HttpRequest, pk: int, *, write: bool = False) -> Segment:
    """The segment, or 404 if there is none, or 403 without View (and Edit) access."""
    perms = ["segments.view_segment"]
    if write:
        perms.append("segments.change_segment")
    require_perms(request.user, *perms)
    return get_object_or_404(Segment, pk=pk)


@require_GET
@login_required
def segment_list(request: HttpRequest):
    require_perms(request.user, "segments.view_segment")
    query = request.GET.get("q", "").strip()
    segments = Segment.objects.all()
    if query:
        segments = segments.filter(name__icontains=query)
    page = Paginator(segments, 50).get_page(request.GET.get("page"))
    return render(request, "segments/list.html", {"page": page, "query": query})


@require_GET
@login_required
def segment_detail(request: HttpRequest, pk: int):
    segment = _get_segment_for_user(request, pk)
    return render(request, "segments/detail.html", {"segment": segment})
