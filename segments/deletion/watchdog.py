"""The watchdog: resumes deletion jobs whose runner is gone.

A django-q2 schedule (``segments.tasks.deletion_watchdog``) calls it every
minute. It decides under the job's advisory lock, so a live runner is never
second-guessed, and it counts each resume as an interruption through the same
``services`` function a runner uses when it loses its connection.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from segments.deletion.services import CONTINUE, _AdvisoryLock, _record_crash, deletion_enqueue
from segments.models import DeletionJob

logger = logging.getLogger(__name__)


def deletion_watchdog() -> list[int]:
    """Resume jobs whose worker died: active, with a heartbeat (a batch, a
    start, an enqueue) older than DELETION_STALE_AFTER_SECONDS, and no runner
    holding the job's lock. An interruption counts as an attempt; a job that
    was only waiting for its first task does not.

    Returns the ids of the jobs it resumed or failed.
    """
    stale = timezone.now() - timedelta(seconds=settings.DELETION_STALE_AFTER_SECONDS)
    lost = DeletionJob.objects.filter(status__in=DeletionJob.ACTIVE_STATUSES).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale)
    )
    touched = []
    for job_id in lost.values_list("pk", flat=True):
        # Holding the runner's lock while deciding: no runner can start
        # meanwhile, and a live one makes the try fail.
        with _AdvisoryLock(job_id) as lock:
            if not lock.acquired:
                continue
            outcome = _record_crash(
                job_id,
                "The worker running this deletion stopped (no heartbeat); resuming.",
                stale_before=stale,
            )
        if outcome in CONTINUE:
            deletion_enqueue(job_id=job_id)
        if outcome in ("retrying", "failed"):
            logger.warning("Watchdog: deletion job %s had no heartbeat: %s", job_id, outcome)
            touched.append(job_id)
    return touched
