"""django-q2 entry points. Each loads by id and calls a service; nothing more."""

from segments import deletion


def run_deletion_job(job_id: int) -> str:
    return deletion.deletion_run(job_id=job_id)


def deletion_watchdog() -> list[int]:
    return deletion.deletion_watchdog()
