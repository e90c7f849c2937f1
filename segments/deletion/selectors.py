"""Reads for the deletion UI: what the segment page and the dialog show."""

from django.db import DatabaseError, connection, transaction

from profiles.models import Event, SubscriptionPreference
from segments.models import DeletionJob, Segment, SegmentMembership

DELETE_PERMS = ("segments.view_segment", "segments.change_segment", "profiles.delete_profile")

# Counting the events of a million-profile segment can take seconds; the
# dialog shows "not counted" rather than keep the user waiting longer.
COUNT_TIMEOUT_MS = 3000


def user_can_delete_profiles(user) -> bool:
    return user.is_authenticated and user.has_perms(DELETE_PERMS)


def segment_membership_token(segment: Segment) -> str:
    """Names the membership the confirmation dialog shows.

    Members are only ever added by a refresh, and every refresh sets
    ``last_refreshed_at``; so a dialog that carries this token and the count
    it showed confirms exactly one set of people. Removals (profiles deleted
    meanwhile) change the count, which the confirmation checks as well.
    """
    if segment.last_refreshed_at is None:
        return "never-refreshed"
    return segment.last_refreshed_at.isoformat()


def deletion_panel_context(*, segment: Segment, user) -> dict:
    """What the segment page shows about deletions: the menu item, the live
    progress of the latest job, and the deletion history."""
    jobs = list(DeletionJob.objects.filter(segment=segment).order_by("-created_at", "-id")[:10])
    return {
        "can_delete_profiles": user_can_delete_profiles(user),
        "deletion_jobs": jobs,
        "job": jobs[0] if jobs else None,
    }


def deletion_dialog_context(*, segment: Segment, current_count: int | None = None) -> dict:
    """The numbers the confirmation dialog shows: profiles (as of the last
    refresh), and the events and preference rows that go with them."""
    members = SegmentMembership.objects.filter(segment=segment).values("profile_id")
    return {
        "dialog_count": current_count if current_count is not None else segment.member_count or 0,
        "count_changed": current_count is not None,
        "event_count": _count_or_none(Event.objects.filter(profile_id__in=members)),
        "preference_count": _count_or_none(
            SubscriptionPreference.objects.filter(profile_id__in=members)
        ),
    }


def _count_or_none(queryset) -> int | None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [str(COUNT_TIMEOUT_MS)]
            )
            return queryset.count()
    except DatabaseError:
        return None
