"""Writes for retention schedules: define them, and run them.

The schedule only decides *when*. A run (``retention_run``) refreshes the
segment through ``segment_refresh``, checks the brake, and starts an
ordinary deletion job through ``deletion_start``, the service the dialog
uses, confirmed in the owner's name with ``started_by_schedule``: the same
snapshot, batches, audit, receipt and ending email as a manual deletion.

Who runs what, and why it cannot run twice:

- One django-q2 schedule calls ``retention_dispatch`` every minute. It
  finds due schedules ``FOR UPDATE SKIP LOCKED`` and claims each slot by
  moving ``next_run_at`` forward in the same transaction that enqueues the
  run (the ORM broker's queue is a table in the same database), so two
  dispatchers (two clusters) never claim one slot, and a claimed slot always
  has its task.
- The broker delivers at least once. A run holds the schedule's advisory
  lock, and records its slot as done (``last_slot``) in the transaction of
  its outcome, the deletion job included (see ``retention_run``).
- The next slot is computed from *now*: a window missed while the workers
  were down runs once, not once per missed slot.
"""

import datetime
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, transaction
from django.utils import timezone

from segments.deletion import services as deletion
from segments.deletion.selectors import segment_membership_token, user_can_delete_profiles
from segments.locks import TryAdvisoryLock
from segments.models import DeletionJob, RetentionSchedule, Segment
from segments.names import segment_name_mismatch
from segments.retention.notices import retention_brake_emails_send
from segments.retention.timing import next_slot, schedule_timezone
from segments.rules import RulesError
from segments.services import SegmentRefreshInProgress, segment_refresh

logger = logging.getLogger(__name__)

RUN_TASK = "segments.tasks.run_retention"


class RetentionRefused(Exception):
    """A request about a schedule that must not be done; the message is for the user."""


class RetentionNotConfirmed(RetentionRefused):
    """The segment's name was not typed (or not typed right) to resume."""


rules_digest = RetentionSchedule.digest


def _when(moment) -> str:
    return timezone.localtime(moment, schedule_timezone()).strftime("%-d %b %Y, %H:%M %Z")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- Editors' actions ----------------------------------------------------------


def retention_create(
    *,
    segment: Segment,
    user,
    typed_name: str,
    frequency: str,
    weekday: int | None,
    time_of_day,
    max_profiles: int,
    now=None,
) -> RetentionSchedule:
    """Schedule the deletion of the segment's members, confirmed by ``user``
    typing the segment's exact name, as for a manual deletion."""
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    if typed_name != segment.name:
        raise RetentionRefused(
            "The name you typed does not match the segment's name exactly. No schedule was created."
        )
    now = now or timezone.now()
    if frequency != RetentionSchedule.Frequency.WEEKLY:
        weekday = None
    with transaction.atomic():
        current = Segment.objects.select_for_update().filter(pk=segment.pk).first()
        if current is None:
            raise RetentionRefused("This segment no longer exists. No schedule was created.")
        if RetentionSchedule.objects.filter(segment=current).exists():
            raise RetentionRefused(
                "This segment already has a retention schedule. No schedule was created."
            )
        schedule = RetentionSchedule.objects.create(
            segment=current,
            owner=user,
            owner_username=user.get_username(),
            frequency=frequency,
            weekday=weekday,
            time_of_day=time_of_day,
            max_profiles=max_profiles,
            rules_digest=rules_digest(current.rules),
            next_run_at=next_slot(
                frequency=frequency, weekday=weekday, time_of_day=time_of_day, after=now
            ),
        )
    logger.info(
        "Retention schedule %s of segment %s created by %s", schedule.pk, segment.pk, user.pk
    )
    return schedule


def retention_pause(*, schedule: RetentionSchedule, user, now=None) -> RetentionSchedule:
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    now = now or timezone.now()
    paused = _pause(
        schedule.pk, reason=f"Paused by {user.get_username()} on {_when(now)}.", now=now
    )
    if not paused:
        raise RetentionRefused("This schedule is already paused.")
    schedule.refresh_from_db()
    return schedule


def retention_resume(
    *, schedule: RetentionSchedule, user, typed_name: str, now=None
) -> RetentionSchedule:
    """Go on, from the next slot after now, with the rules as they are now.

    Resuming confirms those rules, as creating the schedule did, so it takes
    the segment's name typed again (compared as the manual deletion
    compares it). Whoever resumes becomes the owner: they reviewed the
    segment, the runs confirm deletions in their name and the emails go to
    them.
    """
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    mismatch = segment_name_mismatch(
        typed_name, schedule.segment.name, nothing_done="The schedule is still paused."
    )
    if mismatch:
        raise RetentionNotConfirmed(mismatch)
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            RetentionSchedule.objects.select_for_update()
            .select_related("segment")
            .get(pk=schedule.pk)
        )
        if not schedule.is_paused:
            raise RetentionRefused("This schedule is not paused.")
        schedule.status = RetentionSchedule.Status.ACTIVE
        schedule.pause_reason, schedule.paused_at, schedule.brake_found = "", None, None
        schedule.brake_email_owed = False
        schedule.owner, schedule.owner_username = user, user.get_username()
        schedule.rules_digest = rules_digest(schedule.segment.rules)
        schedule.next_run_at = next_slot(
            frequency=schedule.frequency,
            weekday=schedule.weekday,
            time_of_day=schedule.time_of_day,
            after=now,
        )
        schedule.save()
    logger.info("Retention schedule %s resumed by %s", schedule.pk, user.pk)
    return schedule


def retention_delete(*, schedule: RetentionSchedule, user) -> None:
    """Delete the schedule. A deletion it started goes on (it is an ordinary
    job, with its own Stop button)."""
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    deleted, _ = RetentionSchedule.objects.filter(pk=schedule.pk).delete()
    if not deleted:
        raise RetentionRefused("This schedule was already deleted.")
    logger.info("Retention schedule %s deleted by %s", schedule.pk, user.pk)


def _pause(schedule_id: int, *, reason: str, now, brake_found: int | None = None) -> bool:
    """Pause an active schedule; False if it was paused (or gone) already."""
    paused = RetentionSchedule.objects.filter(
        pk=schedule_id, status=RetentionSchedule.Status.ACTIVE
    ).update(
        status=RetentionSchedule.Status.PAUSED,
        pause_reason=reason[:2000],
        paused_at=now,
        brake_found=brake_found,
        brake_email_owed=brake_found is not None,
        updated_at=now,
    )
    if paused:
        logger.info("Retention schedule %s paused: %s", schedule_id, reason)
    return bool(paused)


# --- The dispatcher ----------------------------------------------------------------


def retention_dispatch(*, now=None) -> list[tuple[int, object]]:
    """Claim every due slot and enqueue its run; return (schedule id, slot)
    of each slot this call claimed. ``now`` is for tests' clocks."""
    from django_q.conf import Conf
    from django_q.tasks import async_task

    now = now or timezone.now()
    claimed = []
    while True:
        with transaction.atomic():
            schedule = (
                RetentionSchedule.objects.select_for_update(skip_locked=True)
                .filter(status=RetentionSchedule.Status.ACTIVE, next_run_at__lte=now)
                .order_by("next_run_at", "pk")
                .first()
            )
            if schedule is None:
                break
            slot = schedule.next_run_at
            schedule.next_run_at = next_slot(
                frequency=schedule.frequency,
                weekday=schedule.weekday,
                time_of_day=schedule.time_of_day,
                after=now,
            )
            schedule.save(update_fields=["next_run_at", "updated_at"])

            def enqueue(schedule_id=schedule.pk, slot=slot):
                async_task(
                    RUN_TASK,
                    schedule_id,
                    slot.isoformat(),
                    task_name=f"retention-{schedule_id}-{slot:%Y%m%dT%H%M}",
                    group="segment-retention",
                )

            if Conf.SYNC:
                # Sync mode runs the task inline: not inside this transaction.
                transaction.on_commit(enqueue)
            else:
                # The queue is a table of this database: the claim and its
                # task commit together, or neither does.
                enqueue()
        claimed.append((schedule.pk, slot))
        logger.info("Retention schedule %s: run of %s enqueued", schedule.pk, slot.isoformat())
    # Brake emails a process died before sending.
    try:
        retention_brake_emails_send()
    except Exception:
        logger.exception("Retention dispatcher: sending the brake emails owed failed")
    return claimed


# --- A run -----------------------------------------------------------------------------

# pg_try_advisory_lock(key1, key2): our namespace, then the schedule id.
# (Deletion jobs use 0x5E6D, refreshes 0x5E6E.)
RUN_LOCK_NAMESPACE = 0x5E6F


def retention_run(*, schedule_id: int, slot, now=None) -> str:
    """Run one claimed slot: refresh, brake, start the deletion.

    Exactly once per slot: a run holds the schedule's advisory lock (a
    second delivery meanwhile exits: "running"), and records the slot as
    done (``last_slot``) in the same transaction as its outcome, the
    deletion job included. A run killed before that leaves the slot open,
    and the broker's redelivery runs it; one that got that far is not run
    again ("duplicate").

    Returns what happened, for logs and tests: "gone", "running",
    "duplicate", "paused", "busy" (a deletion of the segment was active, or
    a refresh was), "changed" (the schedule was paused and resumed during
    the run), "braked", "empty", "failed" (the refresh or the start
    failed; the note says why) or "started".
    """
    if isinstance(slot, str):
        slot = datetime.datetime.fromisoformat(slot)
    # One delivery of a run at a time (segments.locks).
    with TryAdvisoryLock(RUN_LOCK_NAMESPACE, schedule_id) as lock:
        if not lock.acquired:
            logger.info(
                "Retention schedule %s: a run is in progress; this delivery exits", schedule_id
            )
            return "running"
        return _run(schedule_id, slot, now or timezone.now())


def _run(schedule_id: int, slot, now) -> str:
    schedule = (
        RetentionSchedule.objects.select_related("segment", "owner").filter(pk=schedule_id).first()
    )
    if schedule is None:
        return "gone"
    if schedule.last_slot is not None and schedule.last_slot >= slot:
        logger.info("Retention schedule %s: slot %s already run", schedule_id, slot)
        return "duplicate"
    if schedule.is_paused:
        _settle(schedule, slot)
        return "paused"
    segment, owner = schedule.segment, schedule.owner
    slot_words = _when(slot)
    # Every pause and resume stamps updated_at (the dispatcher's claim did,
    # before this run). A rule edit and a resume both landing during the
    # refresh leave the schedule active and confirming the new rules, while
    # the membership the refresh wrote is the old rules': the start checks
    # that the schedule is as this run found it.
    found_at = schedule.updated_at

    active = deletion.deletion_active_job(segment=segment)
    if active is not None:
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} was skipped: deletion #{active.pk} of this segment "
            "was still running. The next run goes ahead as planned.",
        )
        return "busy"
    if schedule.rules_changed:
        _pause_run(
            schedule,
            slot,
            now,
            reason=f"The segment's rules changed since this schedule was confirmed (found at "
            f"the run of {slot_words}). Review who is in the segment, then resume.",
        )
        return "paused"
    if owner is None or not owner.is_active or not user_can_delete_profiles(owner):
        _pause_run(schedule, slot, now, reason=_owner_gone(schedule))
        return "paused"

    try:
        count = segment_refresh(
            segment=segment, statement_timeout=settings.Q_CLUSTER["timeout"] * 0.5
        )
    except SegmentRefreshInProgress:
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} was skipped: the segment was being refreshed by "
            "someone else. The next run goes ahead as planned.",
        )
        return "busy"
    except Segment.DoesNotExist:
        return "gone"
    except (RulesError, DatabaseError):
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} did not delete anyone: the refresh failed. "
            f"{segment.refresh_error}",
        )
        return "failed"

    schedule.refresh_from_db(fields=["status", "rules_digest", "max_profiles"])
    segment.refresh_from_db(fields=["rules", "name", "member_count", "last_refreshed_at"])
    if schedule.is_paused:
        # Paused while the refresh ran (a rule edit, an Editor): nothing starts.
        _settle(schedule, slot)
        return "paused"
    if schedule.rules_changed:
        _pause_run(
            schedule,
            slot,
            now,
            reason=f"The segment's rules changed during the run of {slot_words}. Review who "
            "is in the segment, then resume.",
        )
        return "paused"
    if count > schedule.max_profiles:
        _pause_run(
            schedule,
            slot,
            now,
            reason=f"The run of {slot_words} found {_plural(count, 'profile')}, more than the "
            f"{schedule.max_profiles:,} a run may delete, so nobody was deleted. Check the "
            "segment, then resume (or change the limit by deleting and re-creating the schedule).",
            brake_found=count,
            note=f"The run of {slot_words} was stopped by the brake.",
        )
        transaction.on_commit(retention_brake_emails_send, robust=True)
        return "braked"
    if count == 0:
        _settle(schedule, slot, now=now, note=f"The run of {slot_words} found nobody to delete.")
        return "empty"

    try:
        # The job and the slot's record commit together: a run killed before
        # this commit started nothing, and its redelivery runs the slot.
        with transaction.atomic():
            result = deletion.deletion_start(
                segment=segment,
                user=owner,
                typed_name=segment.name,
                expected_count=count,
                membership_token=segment_membership_token(segment),
                started_by_schedule=True,
            )
            job = result.job
            if result.created:
                # Read under the segment's lock that deletion_start took: the
                # rules the job was confirmed for, and whether someone paused
                # the schedule while this run refreshed.
                if RetentionSchedule.digest(job.rules_at_confirmation) != schedule.rules_digest:
                    raise _Abandon("rules")
                if not RetentionSchedule.objects.filter(
                    pk=schedule.pk, status=RetentionSchedule.Status.ACTIVE
                ).exists():
                    raise _Abandon("paused")
                if not RetentionSchedule.objects.filter(
                    pk=schedule.pk, updated_at=found_at
                ).exists():
                    raise _Abandon("changed")
                note = (
                    f"The run of {slot_words} started deletion #{job.pk} of "
                    f"{_plural(job.total, 'profile')}."
                )
                _settle(schedule, slot, now=now, note=note, job=job)
    except PermissionDenied:
        _pause_run(schedule, slot, now, reason=_owner_gone(schedule))
        return "paused"
    except _Abandon as abandoned:
        if abandoned.why == "paused":
            _settle(schedule, slot)
            return "paused"
        if abandoned.why == "changed":
            _settle(
                schedule,
                slot,
                now=now,
                note=f"The run of {slot_words} was skipped: the schedule was paused and resumed "
                "while it ran, so nobody was deleted. The next run goes ahead as planned.",
            )
            return "changed"
        _pause_run(
            schedule,
            slot,
            now,
            reason=f"The segment's rules changed during the run of {slot_words}; nobody was "
            "deleted. Review who is in the segment, then resume.",
        )
        return "paused"
    except deletion.CountChanged:
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} was skipped: the segment changed while it started "
            "(someone refreshed it or deleted some of its profiles). Nobody was deleted; "
            "the next run goes ahead as planned.",
        )
        return "busy"
    except deletion.DeletionRefused as refused:
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} did not delete anyone: {refused}",
        )
        return "failed"
    if not result.created:
        _settle(
            schedule,
            slot,
            now=now,
            note=f"The run of {slot_words} was skipped: deletion #{job.pk} of this segment "
            "was still running.",
        )
        return "busy"
    return "started"


class _Abandon(Exception):
    """Roll back a deletion the run had just started: ``why`` says why."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _owner_gone(schedule: RetentionSchedule) -> str:
    return (
        f"{schedule.owner_username} confirmed this schedule and can no longer delete "
        "profiles. An Editor who resumes it becomes its owner."
    )


def _settle(
    schedule: RetentionSchedule,
    slot,
    *,
    now=None,
    note: str = "",
    job: DeletionJob | None = None,
) -> None:
    """Record the slot as run and, with ``note``, what the run did, in words,
    for the schedule page."""
    fields = {"last_slot": slot}
    if note:
        fields.update(last_run_at=now, last_run_note=note[:2000])
        logger.info("Retention schedule %s: %s", schedule.pk, note)
    if job is not None:
        fields["last_job"] = job
    RetentionSchedule.objects.filter(pk=schedule.pk).update(**fields)


def _pause_run(schedule, slot, now, *, reason: str, brake_found=None, note: str = "") -> None:
    with transaction.atomic():
        _pause(schedule.pk, reason=reason, now=now, brake_found=brake_found)
        _settle(schedule, slot, now=now if note else None, note=note)
