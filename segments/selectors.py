"""Reads for the segment pages."""

from django.db.models import F, OuterRef, Subquery

from profiles.models import Event, Profile
from profiles.selectors import profile_search_filter
from segments.models import Segment, SegmentMembership

# ?sort= values of the segment list, and what they order by.
SORTS = {"name": "name", "count": "member_count", "refreshed": "last_refreshed_at"}


def segment_search(*, query: str = "", sort: str = "name"):
    """Segments whose name contains ``query``, ordered by ``sort`` ("-" for
    descending); segments never refreshed come last either way."""
    segments = Segment.objects.all()
    if query:
        segments = segments.filter(name__icontains=query)
    descending = sort.startswith("-")
    field = SORTS.get(sort.removeprefix("-"), "name")
    order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return segments.order_by(order, "name", "pk")


def segment_members(*, segment: Segment, query: str = ""):
    """The members, with their profile and the time of their last event, for
    keyset pagination by profile id (the membership's unique index).

    ``query`` finds a person the way the profile list does: any part of an
    email, user id or attribute value, ignoring case, through the profiles'
    trigram index (an exact user id or email when it is too short for it).
    """
    last_event = Event.objects.filter(profile=OuterRef("profile_id")).order_by("-occurred_at")
    members = (
        SegmentMembership.objects.filter(segment=segment)
        .select_related("profile")
        .annotate(last_event_at=Subquery(last_event.values("occurred_at")[:1]))
    )
    if query:
        members = members.filter(profile_search_filter(query=query, prefix="profile__"))
    return members


def segment_non_member(*, segment: Segment, query: str) -> Profile | None:
    """A profile that matches ``query`` but is not in the segment: what the
    page names when a search of the members finds nobody."""
    profiles = Profile.objects.exclude(memberships__segment=segment).order_by("pk")
    return profiles.filter(profile_search_filter(query=query)).first()
