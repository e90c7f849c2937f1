"""django-q2 entry points. Each loads by id and calls a service; nothing more."""

from django.conf import settings

from segments import services
from segments.deletion import services as deletion
from segments.deletion import watchdog
from segments.retention import services as retention


def run_deletion_job(job_id: int, runner: int | None = None) -> str:
    return deletion.deletion_run(job_id=job_id, runner=runner)


def deletion_watchdog() -> list[int]:
    return watchdog.deletion_watchdog()


def refresh_segment(segment_id: int) -> None:
    # Below the worker's own timeout, so a slow refresh is recorded as failed
    # on the segment instead of killed mid-way and retried.
    timeout = settings.Q_CLUSTER["timeout"] * 0.9
    services.segment_refresh_requested(segment_id=segment_id, statement_timeout=timeout)


def retention_dispatch() -> list:
    return retention.retention_dispatch()


def run_retention(schedule_id: int, slot: str) -> str:
    return retention.retention_run(schedule_id=schedule_id, slot=slot)
