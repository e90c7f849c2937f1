"""Deleting every profile in a segment: the job, its snapshot, batches and audit.

One job, many entry points: the confirmation view, the progress endpoint,
the django-q2 task, the watchdog and the benchmark all call these functions.

The guarantees, and where each one comes from:

- Exactly the confirmed people: ``deletion_start`` copies the membership into
  ``DeletionJobProfile`` in the same transaction that creates the job, and
  refuses if that is not the number the user was shown. Nothing later reads
  the membership again, so a refresh, a rule edit or new ingestion during the
  run cannot widen it.
- No half-deleted profile: each batch is one transaction that locks its
  profiles, erases them (``profiles.erasure``) and advances the job's cursor
  and counters. A crash rolls back the batch and its cursor together.
- One runner per job: a session-level advisory lock on the job id. A
  duplicate delivery (the ORM broker delivers at least once) finds it taken
  and exits at once; the lock dies with the runner's connection.
- Always finish or say why not: a run works for a bounded time slice, then
  enqueues its continuation once it has let go of the job's lock. A
  heartbeat on the job lets the watchdog resume a job whose worker died;
  after ``MAX_ATTEMPTS`` interruptions in a row without a committed batch the
  job is marked failed with the reason, and an Editor can resume it.
- Parallel runners (DELETION_RUNNERS > 1): the job's first run cuts its
  snapshot into disjoint ranges, one ``DeletionRunner`` row each, and
  enqueues one task per range. Each runner holds its own advisory lock and
  the job's lock shared (so the watchdog, which takes the job's lock alone,
  never acts while one works); its batches are the same as a single
  runner's, with its own cursor row locked instead of the job's, and add
  their counters to the job's row in their last statement, which rolls the
  batch back if the job has ended meanwhile. The job ends once, in
  ``_finish``, by whichever runner finds every runner done or stopped.
"""

import logging
import time
import traceback
from dataclasses import dataclass
from typing import NamedTuple

import psycopg
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    reset_queries,
    transaction,
)
from django.utils import timezone

from profiles.erasure import profiles_erase
from profiles.models import Profile
from segments.deletion.batch import (
    COUNTED_STEPS,
    JOB_RECORD,
    MEMBER_SEGMENTS,
    MEMBERSHIPS,
    RUNNER_RECORD,
    BatchCall,
    active_statuses,
    batch_call,
)
from segments.deletion.notices import deletion_notice_record
from segments.deletion.receipts import receipt_capture, receipt_write_file
from segments.deletion.selectors import segment_membership_token, user_can_delete_profiles
from segments.locks import TryAdvisoryLock
from segments.models import (
    DeletionBatch,
    DeletionJob,
    DeletionJobProfile,
    DeletionRunner,
    Segment,
    SegmentMembership,
)
from segments.names import segment_name_mismatch
from segments.services import segment_lock_for_confirmation, segment_recount

logger = logging.getLogger(__name__)

# pg_advisory_lock(key1, key2): our namespace, then the job id.
ADVISORY_NAMESPACE = 0x5E6D
# A parallel runner's own lock: this plus its number, then the job id.
RUNNER_NAMESPACE = 0x5E6D0000
# Batches are sized to take about this long, to keep locks short.
TARGET_BATCH_SECONDS = 0.25
MIN_BATCH, FIRST_BATCH, MAX_BATCH = 50, 1000, 5000
# Interruptions in a row without progress (watchdog resumes, dropped
# connections) before a job is failed.
MAX_ATTEMPTS = 5
# A batch waits this long for a row lock someone else holds, then lets go of
# its own and is retried, smaller, after a pause.
BATCH_LOCK_TIMEOUT_MS = 1000
LOCK_BACKOFF_SECONDS = 0.2
LOCK_CONFLICTS = ("55P03", "40P01")  # lock_not_available, deadlock_detected
# When only profiles held by someone else are left, look again this often.
HELD_RETRY_SECONDS = 1.0


class DeletionRefused(Exception):
    """A confirmation that must not start a deletion; the message is for the user."""


class NameMismatch(DeletionRefused):
    pass


class CountChanged(DeletionRefused):
    def __init__(self, message, *, current_count):
        super().__init__(message)
        self.current_count = current_count


@dataclass
class StartResult:
    job: DeletionJob
    created: bool


def deletion_enqueue(*, job_id: int, runner: int | None = None) -> None:
    """Hand the job (or one of its parallel runners) to a worker once the
    current transaction commits.

    If the queue cannot take it, the failure is logged and the confirmation
    still stands: the watchdog starts a job whose task never came.
    """
    from django_q.tasks import async_task

    args = (job_id,) if runner is None else (job_id, runner)
    name = f"deletion-{job_id}" if runner is None else f"deletion-{job_id}-runner-{runner}"
    transaction.on_commit(
        lambda: async_task(
            "segments.tasks.run_deletion_job",
            *args,
            task_name=f"{name}-{time.time_ns()}",
            group="segment-deletion",
        ),
        robust=True,
    )


def deletion_start(
    *,
    segment: Segment,
    user,
    typed_name: str,
    expected_count: int | None,
    membership_token: str | None = None,
    suppress: bool = False,
    started_by_schedule: bool = False,
) -> StartResult:
    """Start deleting the segment's profiles, as confirmed by ``user``.

    ``typed_name`` must equal the segment's name exactly (case included,
    both normalized: segments.names). ``expected_count`` and ``membership_token`` are what
    the confirmation dialog showed (see ``membership_token()``): the user
    confirmed *that* membership, so if a refresh has rewritten it since, or
    its size differs in any way, nothing starts and the user is asked to
    review again. If a deletion of this segment is already running, that job
    is returned instead of a new one (the database allows one active job per
    segment). With ``suppress``, the people deleted are also kept from coming
    back through the ingestion API (see ``segments.deletion.receipts``).
    With ``started_by_schedule``, a retention schedule confirms in the name
    of ``user``, its owner (``segments.retention.services``).
    """
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    mismatch = segment_name_mismatch(typed_name, segment.name)
    if mismatch:
        raise NameMismatch(mismatch)
    active = deletion_active_job(segment=segment)
    if active:
        return StartResult(active, created=False)
    unfinished = DeletionJob.objects.unfinished().filter(segment=segment).first()
    if unfinished:
        raise DeletionRefused(
            f"An earlier deletion of this segment stopped part-way, with "
            f"{unfinished.remaining:,} of its profiles still here. Resume it or close it on "
            "the segment page first. Nothing was deleted."
        )
    try:
        with transaction.atomic():
            # No refresh can commit from here to our commit, so the token
            # read now and the snapshot taken next describe one membership.
            current = segment_lock_for_confirmation(segment_id=segment.pk)
            if current is None:
                raise DeletionRefused("This segment no longer exists. Nothing was deleted.")
            job = DeletionJob.objects.create(
                segment=segment,
                segment_name=segment.name,
                created_by=user,
                created_by_username=user.get_username(),
                rules_at_confirmation=current.rules,
                suppress=suppress,
                started_by_schedule=started_by_schedule,
            )
            # The count is the snapshot's own row count: one statement, so no
            # member can slip in between counting and copying.
            total = _snapshot_membership(job=job, segment=segment)
            refreshed = membership_token is not None and membership_token != (
                segment_membership_token(current)
            )
            if refreshed or (expected_count is not None and total != expected_count):
                shown = f"{expected_count:,}" if expected_count is not None else "another number"
                plural = "s" if total != 1 else ""
                now = f"it now has {total:,} profile{plural} (the dialog showed {shown})"
                if refreshed:
                    message = (
                        f"The segment was refreshed after this dialog was opened: {now}, and "
                        "they may not be the same people."
                    )
                else:
                    message = (
                        f"The segment has changed: {now}; some of its profiles were deleted "
                        "since it was last counted."
                    )
                raise CountChanged(
                    f"{message} Review who is in it and confirm again. Nothing was deleted.",
                    current_count=total,
                )
            if total == 0:
                # Nobody to delete: recording a job would only clutter the history.
                raise DeletionRefused(
                    "Nobody is in this segment, so there is nobody to delete. "
                    "Nothing was deleted and no deletion was recorded."
                )
            job.total = total
            job.save(update_fields=["total"])
            deletion_enqueue(job_id=job.pk)
    except IntegrityError:
        # Two confirmations raced (double click, two tabs): the other one won.
        active = deletion_active_job(segment=segment)
        if active is None:
            raise
        return StartResult(active, created=False)
    logger.info(
        "Deletion job %s confirmed by %s: %s profiles of segment %r",
        job.pk,
        job.created_by_username,
        job.total,
        job.segment_name,
    )
    return StartResult(job, created=True)


def _snapshot_membership(*, job: DeletionJob, segment: Segment) -> int:
    """Freeze the segment's membership as the job's set of profile ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DeletionJobProfile._meta.db_table} (job_id, profile_id)
            SELECT %s, profile_id FROM {SegmentMembership._meta.db_table}
            WHERE segment_id = %s
            """,  # noqa: S608 (table names from model metadata)
            [job.pk, segment.pk],
        )
        return cursor.rowcount


def deletion_active_job(*, segment: Segment) -> DeletionJob | None:
    return (
        DeletionJob.objects.filter(segment=segment, status__in=DeletionJob.ACTIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


def deletion_current_count(*, segment: Segment) -> int:
    return SegmentMembership.objects.filter(segment=segment).count()


# --- Running --------------------------------------------------------------------


def _lock_key(job_id: int) -> list[int]:
    return [ADVISORY_NAMESPACE, job_id % 2**31]


class _AdvisoryLock(TryAdvisoryLock):
    """Session-level advisory lock on the job id, so one runner per job.

    Held by the runner for its whole slice and by the watchdog while it
    decides that a job is lost; it dies with the connection that holds it.
    """

    def __init__(self, job_id: int):
        super().__init__(ADVISORY_NAMESPACE, job_id)
        self.job_id = job_id


class _RunnerLock(_AdvisoryLock):
    """A parallel runner's locks: its own (one delivery per runner), and the
    job's shared with the other runners. The job's dispatch and the watchdog
    take the job's lock alone, so neither acts while a runner works; both
    die with the runner's connection."""

    def __init__(self, job_id: int, runner: int):
        super().__init__(job_id)
        self.runner = runner

    def _own_key(self) -> list[int]:
        return [RUNNER_NAMESPACE + self.runner, self.job_id % 2**31]

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", self._own_key())
            if not cursor.fetchone()[0]:
                return self
            cursor.execute("SELECT pg_try_advisory_lock_shared(%s, %s)", _lock_key(self.job_id))
            self.acquired = cursor.fetchone()[0]
            if not self.acquired:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", self._own_key())
        return self

    def __exit__(self, *exc):
        if not self.acquired:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock_shared(%s, %s), pg_advisory_unlock(%s, %s)",
                    [*_lock_key(self.job_id), *self._own_key()],
                )
        except DatabaseError:
            connection.close()


# Outcomes after which the job must go on in a new task. The task is enqueued
# only once the advisory lock is released: a worker picking it up while this
# runner still held the lock would exit as a duplicate, and nothing would
# be left in the queue.
CONTINUE = ("continued", "retrying")


def deletion_run(
    *, job_id: int, slice_seconds: float | None = None, runner: int | None = None
) -> str:
    """Work on the job for up to ``slice_seconds`` (DELETION_SLICE_SECONDS, far
    below Q_CLUSTER["timeout"]), then continue in a new task.

    A job run by parallel runners (see ``_runners_prepare``) is handed to
    them instead: each works on its own range as ``runner``.

    Returns what happened, for logs and tests: "busy" (another runner has the
    job), "gone", "finished" (already done), "completed", "cancelled",
    "continued", "retrying", "failed", "dispatched" (handed to its runners),
    or for a runner "done" or "stopped" (its range is, the job goes on).
    """
    if slice_seconds is None:
        slice_seconds = settings.DELETION_SLICE_SECONDS
    try:
        with _AdvisoryLock(job_id) if runner is None else _RunnerLock(job_id, runner) as lock:
            if not lock.acquired:
                logger.info("Deletion job %s already has a runner; this delivery exits.", job_id)
                return "busy"
            try:
                outcome = _run_slice(job_id, slice_seconds, runner)
            except (OperationalError, InterfaceError) as exc:
                # The database went away mid-batch; the batch rolled back.
                connection.close()
                outcome = _record_crash(job_id, f"Lost the database connection: {exc}".strip())
            except Exception as exc:
                # Neither the stored error nor the log may quote row values.
                error = _error_summary(exc)
                logger.error(
                    "Deletion job %s failed: %s\n%s",
                    job_id,
                    error,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                # Another runner may have ended the job meanwhile: once only.
                _finish(
                    job_id, DeletionJob.Status.FAILED, error=error, if_active=runner is not None
                )
                outcome = "failed"
    except (OperationalError, InterfaceError) as exc:
        # Not even the lock could be taken: the database is unreachable. The
        # task fails; the watchdog resumes the job when the database is back.
        connection.close()
        logger.warning("Deletion job %s: database unavailable: %s", job_id, exc)
        return "unavailable"
    if outcome in CONTINUE and runner is None:
        deletion_enqueue(job_id=job_id)
    elif outcome in CONTINUE:
        deletion_enqueue(job_id=job_id, runner=runner)
    elif outcome == "dispatched":
        _runners_enqueue(job_id)
    return outcome


def _error_summary(exc: BaseException) -> str:
    """The class name and the first line of the message: a database error's
    DETAIL (e.g. "Key (email)=(ada@example.com) already exists") can quote
    row values, so for a psycopg error only its primary message is kept."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if isinstance(cause, psycopg.Error) and cause.diag.message_primary:
        message = cause.diag.message_primary
    else:
        message = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {message}".strip().rstrip(":")


def _run_slice(job_id: int, slice_seconds: float, runner: int | None = None) -> str:
    job = DeletionJob.objects.filter(pk=job_id).first()
    if job is None:
        return "gone"
    if not job.is_active:
        return "finished"
    now = timezone.now()
    started = DeletionJob.objects.filter(pk=job_id, status__in=DeletionJob.ACTIVE_STATUSES).update(
        status=DeletionJob.Status.RUNNING,
        started_at=job.started_at or now,
        heartbeat_at=now,
    )
    if not started:
        return "finished"
    if runner is None and _runners_prepare(job):
        return "dispatched"
    if runner is not None and not _runner_is_active(job_id, runner):
        # Done or stopped already (a second delivery, a resume): the job may
        # still be owed its ending, if the runner that ended last died first.
        return _runner_ended(job_id, runner, status=None)
    deadline = time.monotonic() + slice_seconds
    batch_size = _resumed_batch_size(job_id, parallel=runner is not None)
    while True:
        # With DEBUG on, Django keeps every query's text; a batch's carries
        # thousands of ids. Memory must not grow with the segment.
        reset_queries()
        try:
            batch = deletion_run_batch(job_id=job_id, batch_size=batch_size, runner=runner)
        except JobEnded:
            # Another runner failed the job while this batch ran; it rolled back.
            return _runner_ended(job_id, runner, status=DeletionRunner.Status.STOPPED)
        except OperationalError as exc:
            if _sqlstate(exc) not in LOCK_CONFLICTS:
                raise
            # Someone holds a row the batch must change (a message, an
            # event): let go of everything at once, retry smaller, later.
            logger.info("Deletion job %s: lock conflict, retrying a smaller batch", job_id)
            batch_size = max(MIN_BATCH, batch_size // 2)
            time.sleep(LOCK_BACKOFF_SECONDS)
            if time.monotonic() >= deadline:
                return "continued"
            continue
        if batch.cancelled and runner is not None:
            return _runner_ended(job_id, runner, status=DeletionRunner.Status.STOPPED)
        if batch.handled == 0 and not batch.waiting and runner is not None:
            return _runner_ended(job_id, runner, status=DeletionRunner.Status.DONE)
        if batch.cancelled:
            # A cancel that arrives after the last batch changes nothing.
            status = (
                DeletionJob.Status.CANCELLED
                if _has_remaining(job_id)
                else DeletionJob.Status.COMPLETED
            )
            _finish(job_id, status)
            return status.value
        if batch.handled == 0 and not batch.waiting:
            _finish(job_id, DeletionJob.Status.COMPLETED)
            return "completed"
        if batch.handled == 0:
            # Only profiles that someone else keeps locked are left.
            if _wait_for_held_profiles(job_id):
                return "failed"
            time.sleep(HELD_RETRY_SECONDS)
        else:
            batch_size = _next_batch_size(batch_size, batch.handled, batch.elapsed)
        if time.monotonic() >= deadline:
            return "continued"


def _sqlstate(exc: Exception) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


def _has_remaining(job_id: int) -> bool:
    cursor, deferred = DeletionJob.objects.values_list("cursor", "deferred_profile_ids").get(
        pk=job_id
    )
    return bool(deferred) or (
        DeletionJobProfile.objects.filter(job_id=job_id, profile_id__gt=cursor).exists()
    )


def _resumed_batch_size(job_id: int, *, parallel: bool = False) -> int:
    """Go on at the pace the job's last batch measured.

    Every slice, and every resume after a crash, is a new task; starting each
    at FIRST_BATCH would open it with a batch that, on a slow database, holds
    its profiles' locks far longer than the target (and ingestion, waiting on
    them, past its lock timeout). Parallel runners start together at a
    share of it each: their first batches run at once on one database.
    """
    last = DeletionBatch.objects.filter(job_id=job_id).order_by("-id").first()
    if last is None and parallel:
        count = DeletionRunner.objects.filter(job_id=job_id).count()
        return max(MIN_BATCH, FIRST_BATCH // max(1, count))
    if last is None:
        return FIRST_BATCH
    return _next_batch_size(last.profiles, last.profiles, last.duration_ms / 1000)


def _next_batch_size(size: int, handled: int, elapsed: float) -> int:
    if handled < size:  # the last, partial batch says nothing about speed
        return size
    scaled = int(size * TARGET_BATCH_SECONDS / max(elapsed, 0.001))
    # Grow gently, shrink at once.
    return max(MIN_BATCH, min(MAX_BATCH, scaled, size * 2))


class BatchResult(NamedTuple):
    handled: int  # snapshot rows the batch dealt with: erased, found gone, or set aside
    elapsed: float  # seconds, commit included
    waiting: int = 0  # profiles set aside because someone else holds them
    cancelled: bool = False  # someone asked to stop: the batch did nothing


def deletion_run_batch(*, job_id: int, batch_size: int, runner: int | None = None) -> BatchResult:
    """Erase the next batch of the job's snapshot, in one transaction.

    The batch is the next ``batch_size`` snapshot ids after the cursor; once
    the cursor has reached the end, it is the profiles set aside earlier.
    Profiles that another session holds locked (a long transaction, an admin
    editing one) are not waited for: they are set aside in
    ``deferred_profile_ids`` and retried at the end, so one stuck row cannot
    stall the job. If someone asked to stop the job, nothing is done and
    the result says ``cancelled``.

    The cursor, the set-aside ids, the counters and the batch's log row move
    in the same transaction as the deletes, so a crash at any point leaves
    them consistent with the data, and a batch costs one commit. Round trips
    are what a batch adds to the erasure itself (see README, "Where a batch
    goes"), so a batch of fresh snapshot ids is one call of a server-side
    function (``segments.deletion.batch``) that reads the job (locked), the
    cancel flag and the batch's ids, locks the profiles, records the
    receipt's digests, erases (the function built from ``erasure_plan()``)
    and writes the cursor, counters and log. The set-aside profiles are
    retried with the same steps as separate statements.

    A parallel ``runner`` does the same over its own range, with its own
    cursor and set-aside ids (its row is locked instead of the job's); its
    last statement adds the counters to the job's row, or the batch raises
    ``JobEnded`` (and rolls back) if the job has ended meanwhile.
    """
    started = time.monotonic()
    with transaction.atomic():
        call = batch_call(
            job_id=job_id,
            runner=runner,
            batch_size=batch_size,
            lock_timeout=f"{BATCH_LOCK_TIMEOUT_MS}ms",
            now=timezone.now(),
        )
        if not call.found and runner is None:
            raise DeletionJob.DoesNotExist(f"Deletion job {job_id} does not exist.")
        if not call.found:
            raise DeletionRunner.DoesNotExist(f"Deletion job {job_id} has no runner {runner}.")
        if call.ended:
            raise JobEnded(f"Deletion job {job_id} has ended.")
        if call.cancelled:
            return BatchResult(0, time.monotonic() - started, cancelled=True)
        if call.fresh:
            return BatchResult(call.handled, time.monotonic() - started, waiting=call.waiting)
        if not call.deferred:
            return BatchResult(0, time.monotonic() - started)
        return _retry_set_aside(job_id, call, batch_size=batch_size, runner=runner, started=started)


def _retry_set_aside(
    job_id: int, call: BatchCall, *, batch_size: int, runner: int | None, started: float
) -> BatchResult:
    """The batch once the cursor has reached the end: whichever set-aside
    profiles are free now, up to a batch (a held one at the front must not
    hide free ones behind it), erased with the batch function's steps as
    separate statements, in the caller's transaction (the job's or the
    runner's row is locked already)."""
    erasable = _free_or_gone(sorted(call.deferred), limit=batch_size)
    erasing = set(erasable)
    deferred = [pk for pk in call.deferred if pk not in erasing]
    if not erasable:
        return BatchResult(0, time.monotonic() - started, waiting=len(deferred))
    receipt_capture(job_id=job_id, profile_ids=erasable, suppress=call.suppress)
    result = profiles_erase(profile_ids=erasable, returning=MEMBER_SEGMENTS)
    touched = sorted(set(call.touched) | result.returned.get(MEMBERSHIPS, set()))
    params = {
        "job": job_id,
        "runner": runner,
        "cursor": call.cursor,
        "deferred": deferred,
        "was_deferred": call.deferred,
        "touched": touched,
        "deleted": result.deleted,
        "skipped": result.skipped,
        "handled": result.deleted + result.skipped,
        "profiles": len(erasable),
        "ms": int((time.monotonic() - started) * 1000),
        "now": timezone.now(),
        "active": active_statuses(),
        **{counter: result.count(label) for counter, label in COUNTED_STEPS.items()},
    }
    with connection.cursor() as db:
        if runner is None:
            db.execute(JOB_RECORD.format(into=""), params)
        else:
            db.execute(RUNNER_RECORD.format(into=""), params)
            if db.fetchone() is None:
                raise JobEnded(f"Deletion job {job_id} has ended.")
    return BatchResult(len(erasable), time.monotonic() - started, waiting=len(deferred))


class JobEnded(Exception):
    """A parallel runner's batch found its job ended (failed by another
    runner or by the watchdog) when it came to record itself: it rolls back,
    so nothing is erased after a job's ending."""


def _free_or_gone(profile_ids: list[int], *, limit: int) -> list[int]:
    """Up to ``limit`` of these ids whose profile nobody holds (locked now,
    for this transaction) or that no longer exist, in id order."""
    table = Profile._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) "  # noqa: S608
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [profile_ids, limit],
        )
        free = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT id FROM {table} WHERE id = ANY(%s)", [profile_ids])  # noqa: S608
        existing = {row[0] for row in cursor.fetchall()}
    gone = [pk for pk in profile_ids if pk not in existing]
    return sorted(free + gone)[:limit] if gone else free


def _wait_for_held_profiles(job_id: int) -> bool:
    """Only profiles that someone else keeps locked are left: say on the job
    who holds them, and after DELETION_LOCK_WAIT_SECONDS of that, fail the
    job with the reason (an Editor resumes it once the holder is done).
    Returns True if the job was failed."""
    deferred = DeletionJob.objects.values_list("deferred_profile_ids", flat=True).get(pk=job_id)
    holders = _describe_lock_holders(deferred)
    count = len(deferred)
    waiting_for = (
        f"{count:,} profile{'s' if count != 1 else ''} in use by another connection: {holders}"
    )
    now = timezone.now()
    with transaction.atomic():
        job = DeletionJob.objects.select_for_update().get(pk=job_id)
        since = job.waiting_since or now
        job.waiting_for, job.waiting_since, job.heartbeat_at = waiting_for, since, now
        job.save(update_fields=["waiting_for", "waiting_since", "heartbeat_at"])
    waited = (now - since).total_seconds()
    if waited < settings.DELETION_LOCK_WAIT_SECONDS:
        return False
    minutes = max(1, round(waited / 60))
    # With parallel runners, another one may not have reached the end of its
    # share: say so rather than "every other profile was deleted".
    unfinished_runners = DeletionRunner.objects.filter(job_id=job_id).exclude(
        status=DeletionRunner.Status.DONE
    )
    if unfinished_runners.count() > 1:
        left = (
            "Other profiles of this deletion were not reached yet. Resume when that "
            "connection has finished; these profiles and the ones not reached are left."
        )
    else:
        left = (
            "Every other profile was deleted. Resume when that connection has finished; "
            "only these profiles are left."
        )
    _finish(
        job_id,
        DeletionJob.Status.FAILED,
        if_active=True,
        error=(
            f"Stopped after waiting {minutes} minute{'s' if minutes != 1 else ''} for "
            f"{waiting_for}. {left}"
        ),
    )
    logger.warning("Deletion job %s stopped waiting for %s", job_id, waiting_for)
    return True


def _describe_lock_holders(profile_ids: list[int]) -> str:
    """Who holds these profiles' row locks, in words: each holder's
    application name, state and how long its transaction has been open.

    A row lock is not listed in pg_locks, but the row's ``xmax`` is the
    locking transaction, and that transaction holds a lock on its own id,
    which pg_locks lists with its backend's pid.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT a.pid, a.application_name, a.state,
                   EXTRACT(EPOCH FROM now() - coalesce(a.xact_start, a.state_change))::int
            FROM {Profile._meta.db_table} p
            JOIN pg_locks l ON l.locktype = 'transactionid' AND l.granted
                AND l.mode = 'ExclusiveLock' AND l.transactionid = p.xmax
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE p.id = ANY(%s) AND a.pid <> pg_backend_pid()
            ORDER BY 4 DESC
            LIMIT 3
            """,  # noqa: S608
            [profile_ids],
        )
        rows = cursor.fetchall()
    if not rows:
        return "a session we could not identify (it holds a shared lock)"
    return "; ".join(
        f"“{name or 'unnamed application'}” (process {pid}, {state or 'unknown state'}, "
        f"transaction open for {_duration(age)})"
        for pid, name, state, age in rows
    )


def _duration(seconds: int | None) -> str:
    seconds = int(seconds or 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _finish(job_id: int, status: str | None, *, error: str = "", if_active: bool = False):
    """End the job, and make the stored counts true again: of its segment
    (what is left of the membership, complete or not) and of every other
    segment its profiles belonged to.

    With ``if_active``, a job that has already ended is left as it is
    (parallel runners may try to end it at once: the first one does), and a
    ``status`` of None is the runners' own ending: none until every runner
    is done or stopped. Returns the status it ended the job with, or None.
    """
    with transaction.atomic():
        job = DeletionJob.objects.select_for_update().get(pk=job_id)
        if if_active:
            status = _ending_if_active(job, status)
            if status is None:
                return None
        job.status = status
        job.finished_at = timezone.now()
        job.waiting_for, job.waiting_since = "", None
        fields = ["status", "finished_at", "waiting_for", "waiting_since"]
        if error:
            job.error = error[:2000]
            fields.append("error")
        job.save(update_fields=fields)
        # The email to whoever confirmed it, owed in the ending's own transaction.
        deletion_notice_record(job=job)
        segment_ids = set(job.touched_segment_ids)
        if job.segment_id:
            segment_ids.add(job.segment_id)
        segment_recount(segment_ids=segment_ids)
    logger.info("Deletion job %s %s", job_id, status)
    receipt_write_file(job_id=job_id)
    return status


def _record_crash(job_id: int, error: str, *, stale_before=None) -> str:
    """Count an interruption; "retrying" (the caller enqueues the job once it
    holds no lock on it), or "failed" after MAX_ATTEMPTS, with the reason.

    With ``stale_before`` (the watchdog), nothing happens unless the job is
    still active and its heartbeat still older than that: a job that went on
    or ended while the watchdog looked is left alone.
    """
    with transaction.atomic():
        job = DeletionJob.objects.select_for_update().get(pk=job_id)
        if not job.is_active:
            return "finished"
        if stale_before is not None and job.heartbeat_at and job.heartbeat_at >= stale_before:
            return "alive"
        if job.status == DeletionJob.Status.PENDING and stale_before is not None:
            # It never started (its task was lost): not an interruption.
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["heartbeat_at"])
            return "retrying"
        job.attempts += 1
        job.interruptions += 1
        job.error = error[:2000]
        if job.attempts >= MAX_ATTEMPTS:
            job.save(update_fields=["attempts", "interruptions", "error"])
            final = f"Stopped after {job.attempts} interruptions. Last error: {error}"
        else:
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["attempts", "interruptions", "error", "heartbeat_at"])
            return "retrying"
    # Parallel runners may end the job meanwhile: once only.
    _finish(job_id, DeletionJob.Status.FAILED, error=final, if_active=True)
    return "failed"


# --- Parallel runners ------------------------------------------------------------


def _runners_prepare(job: DeletionJob) -> bool:
    """Whether the job is run by parallel runners; called by the job's own
    task, holding the job's lock alone (no runner works meanwhile).

    A job that has not run a batch yet is cut into DELETION_RUNNERS ranges
    when DELETION_RUNNERS > 1; a job keeps the way it started (a job begun
    by one runner goes on with one, whatever the setting says now). Runners
    stopped by a cancel or an ending are set to work again, unless a cancel
    is still asked for.
    """
    runners = DeletionRunner.objects.filter(job=job)
    if runners.exists():
        if not job.cancel_requested:
            runners.filter(status=DeletionRunner.Status.STOPPED).update(
                status=DeletionRunner.Status.ACTIVE
            )
        return True
    if settings.DELETION_RUNNERS < 2 or job.batches or job.cursor or job.deferred_profile_ids:
        return False
    return _runners_create(job_id=job.pk, count=settings.DELETION_RUNNERS) > 0


def _runners_create(*, job_id: int, count: int) -> int:
    """Cut the snapshot into ``count`` ranges of (nearly) equal size, in id
    order: disjoint, and together the whole snapshot. One statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DeletionRunner._meta.db_table}
                (job_id, number, low, high, "cursor", deferred_profile_ids, total, handled,
                 batches, status)
            SELECT %(job)s, tile - 1, min(profile_id), max(profile_id), min(profile_id) - 1,
                   '{{}}', count(*), 0, 0, %(status)s
            FROM (
                SELECT profile_id, ntile(%(count)s) OVER (ORDER BY profile_id) AS tile
                FROM {DeletionJobProfile._meta.db_table} WHERE job_id = %(job)s
            ) cut
            GROUP BY tile
            """,  # noqa: S608 (table names from model metadata)
            {"job": job_id, "count": count, "status": DeletionRunner.Status.ACTIVE},
        )
        return cursor.rowcount


def _runners_enqueue(job_id: int) -> None:
    """A task for each runner still working; with none, the job's ending
    (every runner ended, but the one that ended last died before ending the job)."""
    numbers = list(
        DeletionRunner.objects.filter(job_id=job_id, status=DeletionRunner.Status.ACTIVE)
        .order_by("number")
        .values_list("number", flat=True)
    )
    for number in numbers:
        deletion_enqueue(job_id=job_id, runner=number)
    if not numbers:
        _finish(job_id, None, if_active=True)


def _runner_is_active(job_id: int, runner: int) -> bool:
    return DeletionRunner.objects.filter(
        job_id=job_id, number=runner, status=DeletionRunner.Status.ACTIVE
    ).exists()


def _runner_ended(job_id: int, runner: int, *, status: str | None) -> str:
    """The runner has reached the end of its range (DONE) or seen the job
    cancelled or ended (STOPPED): record it, then end the job if this was
    the last runner working. A stop is recorded only while the cancel or
    the ending it saw still holds (a resume in between means: go on)."""
    if status == DeletionRunner.Status.DONE:
        DeletionRunner.objects.filter(job_id=job_id, number=runner).update(status=status)
    elif status == DeletionRunner.Status.STOPPED:
        job = DeletionJob.objects.filter(pk=job_id)
        still = job.filter(cancel_requested=True) | job.exclude(
            status__in=DeletionJob.ACTIVE_STATUSES
        )
        stopped = DeletionRunner.objects.filter(
            job_id=job_id,
            number=runner,
            status=DeletionRunner.Status.ACTIVE,
            job__in=still,
        ).update(status=status)
        if not stopped:
            return "continued"
    ended = _finish(job_id, None, if_active=True)
    if ended is not None:
        return str(ended)
    return "done" if status == DeletionRunner.Status.DONE else "stopped"


def _ending_if_active(job: DeletionJob, status: str | None) -> str | None:
    """The status to end the (locked) job with, or None to leave it: it has
    ended already, or (``status`` None, the runners' ending) a runner is
    still working, or one stopped with no cancel asked for (it was stopped
    by an ending since resumed: the job's task sets it to work again)."""
    if not job.is_active:
        return None
    if status is not None:
        return status
    runners = set(DeletionRunner.objects.filter(job=job).values_list("status", flat=True))
    if DeletionRunner.Status.ACTIVE in runners:
        return None
    if DeletionRunner.Status.STOPPED in runners and not job.cancel_requested:
        return None
    if job.cancel_requested and job.remaining:
        return DeletionJob.Status.CANCELLED
    return DeletionJob.Status.COMPLETED


# --- User actions ----------------------------------------------------------------


def deletion_cancel(*, job: DeletionJob, user) -> None:
    """Ask the runner to stop after its current batch.

    Profiles already deleted stay deleted; the rest stay. A job that has not
    started yet is cancelled by its runner as soon as it picks it up.
    """
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    updated = DeletionJob.objects.filter(pk=job.pk, status__in=DeletionJob.ACTIVE_STATUSES).update(
        cancel_requested=True, cancelled_by_username=user.get_username()
    )
    if not updated:
        raise DeletionRefused("This deletion is not running any more.")
    logger.info("Deletion job %s: cancel requested by %s", job.pk, user.get_username())


def deletion_resume(*, job: DeletionJob, user) -> DeletionJob:
    """Go on with a job that stopped part-way (failed, or stopped by someone)
    from its cursor: the rest of the confirmed set, nobody else."""
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    with transaction.atomic():
        job = DeletionJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_unfinished:
            raise DeletionRefused(
                "Only a deletion that stopped part-way, and was not closed, can be resumed."
            )
        job.status = DeletionJob.Status.PENDING
        job.attempts = 0
        job.finished_at = None
        job.cancel_requested = False
        # The page's "no progress for …" counts from here, not from the
        # last batch before it stopped.
        job.heartbeat_at = job.last_progress_at = timezone.now()
        # In the audit, beside who confirmed it and who stopped it.
        job.resumed_by_username, job.resumed_at = user.get_username(), job.heartbeat_at
        try:
            with transaction.atomic():
                job.save(
                    update_fields=[
                        "status",
                        "attempts",
                        "finished_at",
                        "cancel_requested",
                        "heartbeat_at",
                        "last_progress_at",
                        "resumed_by_username",
                        "resumed_at",
                    ]
                )
        except IntegrityError:
            raise DeletionRefused(
                "Another deletion of this segment is running; wait for it to end."
            ) from None
        deletion_enqueue(job_id=job.pk)
    logger.info("Deletion job %s resumed by %s", job.pk, user.get_username())
    return job


def deletion_close(*, job: DeletionJob, user) -> DeletionJob:
    """Close a job that stopped part-way, keeping the profiles it had not
    deleted. It can no longer be resumed, and its segment can be deleted."""
    if not user_can_delete_profiles(user):
        raise PermissionDenied
    with transaction.atomic():
        job = DeletionJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_unfinished:
            raise DeletionRefused("Only a deletion that stopped part-way can be closed.")
        job.closed_at = timezone.now()
        job.closed_by_username = user.get_username()
        job.save(update_fields=["closed_at", "closed_by_username"])
    logger.info(
        "Deletion job %s closed by %s; %s profiles kept", job.pk, user.get_username(), job.remaining
    )
    return job
