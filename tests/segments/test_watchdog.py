"""The deletion watchdog (segments/deletion/watchdog.py): what it resumes,
what it leaves alone, what its schedule runs, and a runner that froze."""

import ast
import importlib
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task

from segments.deletion import services as deletion
from segments.deletion import watchdog
from segments.models import DeletionJob
from tests.segments.population import build_population, insert_population
from tests.workers import (
    QCluster,
    advisory_lock_holders,
    backends,
    cluster_backends,
    slow_event_deletes,
    wait_for,
)

SCHEDULE_MIGRATION = importlib.import_module("segments.migrations.0002_deletion_watchdog")


@pytest.fixture
def population(db):
    return build_population()


def start(population, user) -> DeletionJob:
    return deletion.deletion_start(
        segment=population.segment,
        user=user,
        typed_name=population.segment.name,
        expected_count=len(population.doomed),
    ).job


def running_since(job, seconds: float) -> DeletionJob:
    """The job as a runner left it, its last heartbeat ``seconds`` ago."""
    ago = timezone.now() - timedelta(seconds=seconds)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", heartbeat_at=ago, created_at=ago - timedelta(seconds=1)
    )
    return DeletionJob.objects.get(pk=job.pk)


def run_task_rows(job) -> list[OrmQ]:
    return [row for row in OrmQ.objects.all() if row.task.get("args") == (job.pk,)]


def hand_out(row: OrmQ, *, at) -> None:
    """What the ORM broker does when a cluster takes the task at ``at``."""
    from django.conf import settings

    OrmQ.objects.filter(pk=row.pk).update(lock=at + timedelta(seconds=settings.Q_CLUSTER["retry"]))


# --- what the schedule names --------------------------------------------------------


def test_the_watchdog_schedule_runs_a_function_that_resumes_a_stale_job(
    population, alice, django_capture_on_commit_callbacks
):
    """Run what the migration's Schedule row names, as django-q2 would: a
    scheduled task that does nothing must fail here, not only in production."""
    SCHEDULE_MIGRATION.schedule(apps, None)  # a transactional test's flush removes it
    job = running_since(start(population, alice), 300)
    schedules = Schedule.objects.filter(name=SCHEDULE_MIGRATION.NAME)
    assert [s.schedule_type for s in schedules] == [Schedule.MINUTES]
    for schedule in schedules:
        module, name = schedule.func.rsplit(".", 1)
        func = getattr(importlib.import_module(module), name)
        args = ast.literal_eval(schedule.args) if schedule.args else ()
        with django_capture_on_commit_callbacks(execute=True):
            func(*(args if isinstance(args, tuple) else (args,)))
    job.refresh_from_db()
    assert (job.status, job.attempts, job.interruptions) == ("running", 1, 1)
    assert "no heartbeat" in job.error
    assert len(run_task_rows(job)) == 1  # handed to the queue again


# --- a runner that is provably gone ----------------------------------------------


def test_a_job_whose_runner_is_gone_resumes_before_it_is_stale(
    population, alice, settings, django_capture_on_commit_callbacks
):
    """Nobody holds its lock and no task of it is queued: no need to wait
    DELETION_STALE_AFTER_SECONDS (90) to know its worker died."""
    settings.DELETION_GONE_AFTER_SECONDS = 5
    job = running_since(start(population, alice), 10)
    with django_capture_on_commit_callbacks() as callbacks:
        assert watchdog.deletion_watchdog() == [job.pk]
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.attempts, job.interruptions) == (1, 1)
    assert "is gone" in job.error


def test_a_job_whose_task_a_dead_cluster_took_resumes_before_it_is_stale(
    population, alice, settings
):
    """A cluster took the task, started the runner (the heartbeat is later),
    and was killed: the broker would hand the task out again only Q_RETRY
    seconds later."""
    settings.DELETION_GONE_AFTER_SECONDS = 5
    job = start(population, alice)
    async_task("segments.tasks.run_deletion_job", job.pk)
    job = running_since(job, 10)
    hand_out(run_task_rows(job)[0], at=job.heartbeat_at - timedelta(seconds=1))
    assert watchdog.deletion_watchdog() == [job.pk]


def test_the_watchdog_waits_for_a_queued_task_or_one_taken_since_the_heartbeat(
    population, alice, settings
):
    settings.DELETION_GONE_AFTER_SECONDS = 5
    job = start(population, alice)
    async_task("segments.tasks.run_deletion_job", job.pk)
    job = running_since(job, 10)
    # Waiting for a worker: it will run.
    assert watchdog.deletion_watchdog() == []
    # Taken after the heartbeat, not started yet: a busy cluster may still
    # reach it, or a dead one held it; only staleness tells.
    hand_out(run_task_rows(job)[0], at=job.heartbeat_at + timedelta(seconds=1))
    assert watchdog.deletion_watchdog() == []
    job.refresh_from_db()
    assert job.attempts == 0 and job.error == ""


def test_a_quiet_job_for_a_moment_is_left_alone(population, alice, settings):
    settings.DELETION_GONE_AFTER_SECONDS = 5
    job = running_since(start(population, alice), 1)
    assert watchdog.deletion_watchdog() == []
    job.refresh_from_db()
    assert job.attempts == 0


# --- a runner that froze -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_frozen_runner_is_ended_and_a_second_cluster_completes_the_job(alice, settings):
    """SIGSTOP, not SIGKILL: the frozen worker's session stays open and keeps
    the job's lock, as with a host that vanished without closing its TCP
    connection. The watchdog ends that session, and the job resumes."""
    settings.DELETION_STALE_AFTER_SECONDS = 1
    settings.DELETION_TERMINATE_AFTER_SECONDS = 3
    population = insert_population(doomed=1500, survivors=300)
    job = start(population, alice)
    # The server's own idle timeouts would end the session too; here only
    # the watchdog may.
    quiet = {"Q_IDLE_SESSION_TIMEOUT": "0", "Q_IDLE_IN_TRANSACTION_TIMEOUT": "0"}
    frozen = QCluster(timeout=60, retry=120, slice_seconds=30, extra_env=quiet)
    second = QCluster(timeout=60, retry=120, slice_seconds=30)
    with slow_event_deletes():
        try:
            frozen.start()
            wait_for(
                lambda: DeletionJob.objects.get(pk=job.pk).deleted > 0,
                timeout=60,
                message="a first batch",
            )
            frozen.freeze()
            holders = wait_for(
                lambda: advisory_lock_holders(*deletion._lock_key(job.pk)),
                message="the frozen runner's lock",
            )
            at_freeze = DeletionJob.objects.get(pk=job.pk).deleted
            second.start()
            started = time.monotonic()

            def resumed():
                watchdog.deletion_watchdog()
                return DeletionJob.objects.get(pk=job.pk).deleted > at_freeze

            wait_for(resumed, timeout=30, interval=0.5, message="the job to resume")
            assert time.monotonic() - started < 20
            assert not set(holders) & set(backends())  # its session was ended
            done = wait_for(
                lambda: DeletionJob.objects.filter(pk=job.pk, status="completed").first(),
                timeout=60,
                message="the job to complete",
            )
        finally:
            # Before the trigger goes: a frozen batch holds locks on events.
            frozen.thaw()
            frozen.kill()
            second.kill()
            wait_for(lambda: not cluster_backends(), timeout=30, message="the clusters' sessions")
    assert (done.deleted, done.skipped) == (1500, 0)
    assert done.interruptions >= 1
    out = StringIO()
    call_command("verify_deletion", str(job.pk), stdout=out)
    assert out.getvalue().rstrip().endswith("Every check passed.")


# --- a cluster started on its own -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_cluster_started_on_its_own_resumes_a_job_whose_runner_is_gone(alice):
    """No `serve` and no schedule row: only the workers'
    start-up look can resume the job, and it does within seconds."""
    population = insert_population(doomed=300, survivors=100)
    job = running_since(start(population, alice), 30)
    OrmQ.objects.all().delete()  # the lost task went with the crashed cluster
    Schedule.objects.all().delete()
    cluster = QCluster(timeout=60, retry=120, slice_seconds=30)
    try:
        cluster.start()
        started = time.monotonic()
        done = wait_for(
            lambda: DeletionJob.objects.get(pk=job.pk).status == "completed",
            timeout=30,
            interval=0.2,
            message="the job to be resumed by a starting worker",
        )
        assert done
        assert time.monotonic() - started < 15
    finally:
        cluster.stop()
    job.refresh_from_db()
    assert job.deleted == 300 and job.interruptions == 1
