"""Reads for the deletion UI: what the segment page and the dialog show."""

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Func, OuterRef, Q, Subquery
from django.utils import timezone

from profiles.models import Event, SubscriptionPreference
from segments.models import (
    DeletionBatch,
    DeletionJob,
    DeletionNotice,
    Segment,
    SegmentMembership,
)

DELETE_PERMS = ("segments.view_segment", "segments.change_segment", "profiles.delete_profile")

# Counting the events of a million-profile segment can take seconds; the
# dialog shows "not counted" rather than keep the user waiting longer.
COUNT_TIMEOUT_MS = 3000
# A running job with no batch committed for this long says so, instead of
# showing an estimate of the time left.
STALL_NOTICE_SECONDS = 30
# The time left is estimated from the pace of the batches of the last minute.
RATE_WINDOW = timedelta(seconds=60)


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
    progress of the latest job, the deletion history, and what the count
    line owes to a deletion."""
    jobs = list(DeletionJob.objects.filter(segment=segment).order_by("-created_at", "-id")[:10])
    job = jobs[0] if jobs else None
    return {
        "can_delete_profiles": user_can_delete_profiles(user),
        "deletion_jobs": jobs,
        "job": job,
        **deletion_progress_context(job=job),
        **segment_count_context(segment=segment),
    }


def segment_count_context(*, segment: Segment) -> dict:
    """The deletion the member count comes from, if any.

    A deletion recounts its segment when it ends, without re-evaluating the
    rules, so after it the count is "who is left", not "who matches as of the
    last refresh"; the count line says so (and which deletion it was) until
    the next refresh."""
    job = (
        DeletionJob.objects.filter(segment=segment, finished_at__isnull=False, deleted__gt=0)
        .order_by("-finished_at", "-id")
        .first()
    )
    refreshed = segment.last_refreshed_at
    if job is not None and refreshed is not None and job.finished_at <= refreshed:
        job = None
    return {"count_deletion": job}


# The progress milestones the page's live region announces (percent done),
# besides the start and the end: enough to follow a long deletion, far
# fewer than the polls.
ANNOUNCED_MILESTONES = (75, 50, 25)


def deletion_progress_state(job: DeletionJob | None) -> str:
    """Names what the progress card's heading and buttons show; a poll that
    finds the same state swaps only the numbers, so focus and the screen
    reader's place in the card stay put."""
    if job is None:
        return "none"
    if job.is_active and job.cancel_requested:
        return "stopping"
    return job.status


def deletion_announcement(*, job: DeletionJob | None) -> dict | None:
    """What the page's live region says about ``job`` now, and a key that
    names the event. The page announces a key once: the start, the highest
    milestone reached (a poll that jumps from 10% to 80% says 75% only), the
    end."""
    if job is None:
        return None
    deleted = f"{job.deleted:,} of {job.total:,} profile{'s' if job.total != 1 else ''} deleted"
    if job.status == DeletionJob.Status.COMPLETED:
        plural = "s" if job.deleted != 1 else ""
        gone = f"{job.deleted:,} profile{plural} deleted from {job.segment_name}"
        text = f"Deletion complete: {gone}."
        return {"key": f"job-{job.pk}-end", "text": text}
    if job.status == DeletionJob.Status.FAILED:
        text = f"The deletion stopped before it finished: {deleted}."
        return {"key": f"job-{job.pk}-end", "text": text}
    if job.status == DeletionJob.Status.CANCELLED:
        return {"key": f"job-{job.pk}-end", "text": f"Deletion stopped: {deleted}."}
    percent = job.percent_done
    for milestone in ANNOUNCED_MILESTONES:
        if percent >= milestone:
            text = f"Deletion {milestone}% done: {deleted}."
            return {"key": f"job-{job.pk}-{milestone}", "text": text}
    plural = "s" if job.total != 1 else ""
    text = f"Deletion started: deleting {job.total:,} profile{plural} from {job.segment_name}."
    return {"key": f"job-{job.pk}-start", "text": text}


def deletion_progress_context(*, job: DeletionJob | None) -> dict:
    """What the progress card says about time: how long since the last batch
    committed (when that is long enough to mention), else the time left at
    the pace of the last minute's batches. An estimate is never shown for a
    job that is not moving: after a crash it would only grow."""
    facts = {
        "stalled_seconds": None,
        "seconds_left": None,
        "lock_wait_minutes": max(1, round(settings.DELETION_LOCK_WAIT_SECONDS / 60)),
        "progress_state": deletion_progress_state(job),
        "announcement": deletion_announcement(job=job),
    }
    if job is None or not job.is_active:
        return facts
    since = job.last_progress_at or job.started_at or job.created_at
    stalled = int((timezone.now() - since).total_seconds())
    if job.waiting_for or stalled >= STALL_NOTICE_SECONDS:
        facts["stalled_seconds"] = stalled
    else:
        facts["seconds_left"] = _seconds_left(job)
    return facts


def _seconds_left(job: DeletionJob) -> int | None:
    batches = list(
        DeletionBatch.objects.filter(job=job)
        .order_by("-id")
        .values("profiles", "duration_ms", "finished_at")[:20]
    )
    if not batches or not job.remaining:
        return None
    newest = batches[0]["finished_at"]
    recent = [b for b in batches if newest - b["finished_at"] <= RATE_WINDOW]
    oldest = recent[-1]
    span = (newest - oldest["finished_at"]).total_seconds() + oldest["duration_ms"] / 1000
    profiles = sum(b["profiles"] for b in recent)
    if span <= 0 or not profiles:
        return None
    return max(1, int(job.remaining * span / profiles))


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


# --- Across segments: the deletions page and the segment list ----------------------

HISTORY_PAGE_SIZE = 50
# The deletions page's status filter: its values, what they cover, and their labels.
HISTORY_STATUSES = {
    "active": ((DeletionJob.Status.PENDING, DeletionJob.Status.RUNNING), "In progress"),
    "completed": ((DeletionJob.Status.COMPLETED,), "Completed"),
    "failed": ((DeletionJob.Status.FAILED,), "Failed"),
    "cancelled": ((DeletionJob.Status.CANCELLED,), "Stopped"),
}


def deletion_history(*, status: str = "", before: int | None = None) -> tuple[list, int | None]:
    """One page of deletion jobs across segments, newest first, and the id to
    continue before (None on the last page).

    Keyset by id, never OFFSET: any page costs one index scan of the page's
    rows (``deletionjob_status_id_idx`` when filtered by status). Each job
    carries its count of set-aside profiles and the state of its latest
    notice, computed in the same query.
    """
    jobs = DeletionJob.objects.select_related("segment").annotate(
        set_aside=Func(F("deferred_profile_ids"), function="cardinality"),
        notice_state=Subquery(
            DeletionNotice.objects.filter(job=OuterRef("pk"))
            .order_by("-ending")
            .values("state")[:1]
        ),
    )
    if status:
        jobs = jobs.filter(status__in=HISTORY_STATUSES[status][0])
    if before is not None:
        jobs = jobs.filter(pk__lt=before)
    rows = list(jobs.order_by("-id")[: HISTORY_PAGE_SIZE + 1])
    if len(rows) > HISTORY_PAGE_SIZE:
        rows = rows[:HISTORY_PAGE_SIZE]
        return rows, rows[-1].pk
    return rows, None


def segments_with_deletion_status(segments):
    """Each segment with the status of a deletion that is running, or that
    stopped part-way and is still open (None otherwise): one subquery in the
    segment list's own query, whatever the number of rows."""
    open_jobs = (
        DeletionJob.objects.filter(segment=OuterRef("pk"))
        # Spelled as deletionjob_segment_open_idx's condition, so it is used.
        .exclude(status=DeletionJob.Status.COMPLETED)
        .filter(
            Q(status__in=DeletionJob.ACTIVE_STATUSES)
            | Q(
                status__in=[DeletionJob.Status.FAILED, DeletionJob.Status.CANCELLED],
                closed_at__isnull=True,
                total__gt=F("deleted") + F("skipped"),
            )
        )
        .order_by("-id")
    )
    return segments.annotate(deletion_status=Subquery(open_jobs.values("status")[:1]))
