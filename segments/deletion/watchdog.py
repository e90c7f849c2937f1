"""The watchdog: resumes deletion jobs whose runner is gone.

A django-q2 schedule (``segments.tasks.deletion_watchdog``) calls it every
minute, and ``manage.py serve`` calls it when it starts and every
DELETION_SWEEP_SECONDS while it runs. It decides under the job's advisory
lock, so a live runner is never second-guessed, and it counts each resume as
an interruption through the same ``services`` function a runner uses when it
loses its connection.

A job is taken in one of two ways:

- **Its runner is provably gone** (after DELETION_GONE_AFTER_SECONDS without
  a heartbeat): nobody holds the job's lock, no task for it waits in the
  queue, and every task for it that a cluster took was taken before the job's
  last heartbeat, so that runner started and is no longer there (its cluster
  was killed, its host rebooted). Without this, a restart waited for the
  staleness below, or for the broker to hand the lost task out again
  (Q_RETRY), two minutes after a crash.
- **Its heartbeat is stale** (DELETION_STALE_AFTER_SECONDS): whatever the
  queue says. This covers a task taken but never started (a cluster that
  died holding it cannot be told from a busy one that has not reached it).

A runner that still holds the lock but has sent nothing for a long time (a
frozen process, a host that vanished without closing its TCP connection) is
ended with ``pg_terminate_backend`` once the heartbeat is older than
DELETION_TERMINATE_AFTER_SECONDS and its session has not started a statement
for DELETION_STALE_AFTER_SECONDS: its batch rolls back, the lock goes with
the session, and the job is resumed as above.

It also sends the emails owed for jobs that ended in a process that died
before sending them (``notices.deletion_notices_send``).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from segments.deletion.notices import deletion_notices_send
from segments.deletion.receipts import receipts_write_missing
from segments.deletion.services import (
    CONTINUE,
    _AdvisoryLock,
    _lock_key,
    _record_crash,
    deletion_enqueue,
)
from segments.models import DeletionJob

logger = logging.getLogger(__name__)

RUN_TASK = "segments.tasks.run_deletion_job"


def deletion_watchdog_on_worker_start(sender=None, **kwargs) -> None:
    """django-q2's ``post_spawn``: every worker that starts (a cluster
    started after a crash or a deploy, on any machine) looks once for jobs
    whose runner is gone, so they resume within seconds, not at the next
    minute's schedule. Never stops the worker from starting.

    Not in django-q2's sync mode, where "spawning a worker" is running one
    task inline, inside whatever transaction the caller holds."""
    from django_q.conf import Conf

    if Conf.SYNC:
        return
    try:
        deletion_watchdog()
    except Exception:
        logger.exception("Watchdog at worker start failed; the schedule will try again")


def deletion_watchdog() -> list[int]:
    """Resume jobs whose worker died; end a runner session that froze.

    An interruption counts as an attempt; a job that was only waiting for
    its first task does not. Returns the ids of the jobs it resumed or failed.
    """
    # Emails owed for jobs that ended in a process that died before sending.
    # A problem there must not keep the jobs below from being resumed.
    try:
        deletion_notices_send()
    except Exception:
        logger.exception("Watchdog: sending the deletion emails owed failed")
    # Receipt files likewise (receipts_write_missing never raises for a file).
    try:
        receipts_write_missing()
    except Exception:
        logger.exception("Watchdog: writing the deletion receipt files owed failed")
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DELETION_STALE_AFTER_SECONDS)
    quiet = now - timedelta(seconds=settings.DELETION_GONE_AFTER_SECONDS)
    jobs = list(
        DeletionJob.objects.filter(status__in=DeletionJob.ACTIVE_STATUSES).values_list(
            "pk", "heartbeat_at", "created_at"
        )
    )
    if not jobs:
        return []
    queued = _queued_tasks({pk for pk, _, _ in jobs})
    touched = []
    for job_id, heartbeat, created in jobs:
        last_sign = heartbeat or created
        gone = False
        if last_sign < stale:
            _end_frozen_runner(job_id, last_sign=last_sign, now=now)
            reason = "The worker running this deletion stopped (no heartbeat); resuming."
            stale_before = stale
        elif last_sign < quiet and _no_task_can_run(heartbeat, queued.get(job_id, [])):
            reason = "The worker running this deletion is gone (its task is lost); resuming."
            stale_before, gone = quiet, True
        else:
            continue
        # Holding the runner's lock while deciding: no runner can start
        # meanwhile, and a live one makes the try fail.
        with _AdvisoryLock(job_id) as lock:
            if not lock.acquired:
                continue
            if gone and not _no_task_can_run(heartbeat, _queued_tasks({job_id}).get(job_id, [])):
                continue  # a continuation was enqueued while we looked
            outcome = _record_crash(job_id, reason, stale_before=stale_before)
        if outcome in CONTINUE:
            deletion_enqueue(job_id=job_id)
        if outcome in ("retrying", "failed"):
            logger.warning("Watchdog: deletion job %s: %s %s", job_id, reason, outcome)
            touched.append(job_id)
    return touched


def _queued_tasks(job_ids: set[int]) -> dict[int, list]:
    """For each job, when each of its tasks in the queue was handed to a
    cluster (None: still waiting to be handed out).

    The ORM broker keeps a task's row until the task ends; taking it sets the
    row's ``lock`` to Q_RETRY seconds ahead, when it would be handed out again.
    """
    from django_q.models import OrmQ

    now = timezone.now()
    retry = timedelta(seconds=settings.Q_CLUSTER["retry"])
    found: dict[int, list] = {}
    for row in OrmQ.objects.only("payload", "lock"):
        task = row.task
        args = task.get("args") or ()
        if task.get("func") != RUN_TASK or not args or args[0] not in job_ids:
            continue
        taken_at = row.lock - retry if row.lock and row.lock > now else None
        found.setdefault(args[0], []).append(taken_at)
    return found


def _no_task_can_run(heartbeat, taken_at: list) -> bool:
    """No task waits for a worker, and each one a cluster took was taken
    before the last heartbeat: its runner started, and (the lock being free)
    has ended without leaving a continuation."""
    return all(when is not None and heartbeat is not None and when < heartbeat for when in taken_at)


def _end_frozen_runner(job_id: int, *, last_sign, now) -> None:
    """Terminate the session holding the job's lock if the job has had no
    heartbeat for DELETION_TERMINATE_AFTER_SECONDS and that session has not
    started a statement for DELETION_STALE_AFTER_SECONDS (a live runner
    starts several a second)."""
    if last_sign >= now - timedelta(seconds=settings.DELETION_TERMINATE_AFTER_SECONDS):
        return
    namespace, key = _lock_key(job_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            """
            SELECT l.pid, a.state, a.application_name, a.client_addr
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.classid::bigint = %s AND l.objid::bigint = %s
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND a.state_change < now() - make_interval(secs => %s)
            """,
            [namespace, key, settings.DELETION_STALE_AFTER_SECONDS],
        )
        holders = cursor.fetchall()
        for pid, state, application, address in holders:
            # Waits up to 5 s for the backend to exit, so the lock is free
            # when the caller tries it.
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            logger.warning(
                "Watchdog: deletion job %s: ended the runner's session (pid %s, %s, %s, %s) "
                "silent since its last heartbeat at %s",
                job_id,
                pid,
                state,
                application or "-",
                address or "local",
                last_sign.isoformat(),
            )
