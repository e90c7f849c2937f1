"""Reads for the deletion UI: what the segment page needs to show about deletions."""

from segments.models import DeletionJob, Segment

DELETE_PERMS = ("segments.view_segment", "segments.change_segment", "profiles.delete_profile")


def user_can_delete_profiles(user) -> bool:
    return user.has_perms(DELETE_PERMS)


def deletion_panel_context(*, segment: Segment, user) -> dict:
    """Context the segment detail page merges in for the deletion menu item,
    dialog, progress panel and history."""
    jobs = list(DeletionJob.objects.filter(segment=segment).order_by("-created_at", "-id")[:10])
    return {
        "can_delete_profiles": user_can_delete_profiles(user),
        "deletion_jobs": jobs,
        "latest_job": jobs[0] if jobs else None,
    }
