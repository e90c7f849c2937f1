"""Parallel runners (DELETION_RUNNERS > 1), driven in this process one step at
a time. The same runners under a real qcluster, with kills and cancels, are
in test_deletion_faults.py (every fault there runs with 1 and 2 runners)."""

import threading
import time

import pytest
from django.db import connection, connections

from profiles.models import Profile
from segments.deletion import services as deletion
from segments.deletion.checks import deletion_verify
from segments.deletion.receipts import receipt_entry_count
from segments.models import (
    DeletionJob,
    DeletionJobProfile,
    DeletionNotice,
    DeletionRunner,
)
from tests.segments.population import activity_counts, build_population, rows_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population(doomed=12, survivors=12)


@pytest.fixture
def two_runners(settings):
    settings.DELETION_RUNNERS = 2


@pytest.fixture
def enqueued(monkeypatch):
    """The tasks the job hands out, as (job id, runner) pairs, instead of a queue."""
    tasks = []

    def enqueue(*, job_id, runner=None):
        if runner is not None:  # the job's own task (from the confirmation) is not kept
            tasks.append((job_id, runner))

    monkeypatch.setattr(deletion, "deletion_enqueue", enqueue)
    return tasks


def start(population, user):
    return deletion.deletion_start(
        segment=population.segment,
        user=user,
        typed_name=population.segment.name,
        expected_count=len(population.doomed),
    ).job


def run(job, runner=None):
    return deletion.deletion_run(job_id=job.pk, runner=runner, slice_seconds=60)


def state(job):
    return DeletionJob.objects.get(pk=job.pk)


def runners_of(job):
    return list(DeletionRunner.objects.filter(job=job).order_by("number"))


def test_with_one_runner_a_job_has_no_runner_rows(population, alice, enqueued):
    job = start(population, alice)
    assert run(job) == "completed"
    assert not DeletionRunner.objects.exists()
    assert deletion_verify(job=job).ok


def test_the_first_run_cuts_the_snapshot_into_disjoint_ranges_that_cover_it(
    population, alice, two_runners, enqueued
):
    job = start(population, alice)
    assert run(job) == "dispatched"
    first, second = runners_of(job)
    assert enqueued == [(job.pk, 0), (job.pk, 1)]
    snapshot = sorted(
        DeletionJobProfile.objects.filter(job=job).values_list("profile_id", flat=True)
    )
    assert (first.low, first.high, second.low, second.high) == (
        snapshot[0],
        snapshot[5],
        snapshot[6],
        snapshot[-1],
    )
    assert (first.total, second.total) == (6, 6)
    assert first.cursor < first.low and second.cursor < second.low
    # Nothing is deleted by the dispatch itself.
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12


def test_each_runner_deletes_only_its_range_and_the_last_one_ends_the_job_once(
    population, alice, two_runners, enqueued
):
    survivors = rows_of(population.survivors)
    activity = activity_counts()
    job = start(population, alice)
    run(job)
    first, second = runners_of(job)

    assert run(job, runner=1) == "done"
    assert Profile.objects.filter(pk__in=population.doomed).count() == 6
    doomed = Profile.objects.filter(pk__in=population.doomed)
    assert not doomed.filter(pk__gte=second.low, pk__lte=second.high).exists()
    assert doomed.filter(pk__gte=first.low, pk__lte=first.high).count() == 6
    assert state(job).status == "running" and state(job).deleted == 6
    assert deletion_verify(job=job).ok
    assert not DeletionNotice.objects.exists()

    assert run(job, runner=0) == "completed"
    job = state(job)
    assert (job.status, job.deleted, job.skipped) == ("completed", 12, 0)
    assert [r.status for r in runners_of(job)] == ["done", "done"]
    assert [r.handled for r in runners_of(job)] == [6, 6]
    assert DeletionNotice.objects.filter(job=job).count() == 1
    assert receipt_entry_count(job.pk) == 12
    report = deletion_verify(job=job)
    assert report.ok, report.failures
    assert rows_of(population.survivors) == survivors
    assert activity_counts() == activity

    # A late second delivery of either runner, or of the job, changes nothing;
    # nor does a second runner's (or a failing runner's) call to end it.
    assert run(job, runner=0) == "finished"
    assert run(job) == "finished"
    assert deletion._finish(job.pk, None, if_active=True) is None
    assert deletion._finish(job.pk, DeletionJob.Status.FAILED, if_active=True) is None
    assert state(job).status == "completed"
    assert DeletionNotice.objects.filter(job=job).count() == 1


def test_verify_counts_each_runner_up_to_its_own_cursor(population, alice, two_runners, enqueued):
    job = start(population, alice)
    run(job)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2, runner=1)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=3, runner=0)
    job = state(job)
    assert job.deleted == 5
    report = deletion_verify(job=job)
    assert report.ok, report.failures
    # A runner cursor moved past a profile that still exists is caught.
    second = runners_of(job)[1]
    DeletionRunner.objects.filter(pk=second.pk).update(cursor=second.high)
    failed = {finding.check for finding in deletion_verify(job=job).failures}
    assert {"profiles", "handled"} <= failed


def test_a_cancel_stops_both_runners_and_a_resume_finishes_the_rest(
    population, alice, two_runners, enqueued
):
    job = start(population, alice)
    run(job)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2, runner=0)
    deletion.deletion_cancel(job=job, user=alice)

    assert run(job, runner=1) == "stopped"
    assert state(job).status == "running"
    assert run(job, runner=0) == "cancelled"
    job = state(job)
    assert (job.status, job.deleted) == ("cancelled", 2)
    assert [r.status for r in runners_of(job)] == ["stopped", "stopped"]
    assert DeletionNotice.objects.filter(job=job).count() == 1
    assert deletion_verify(job=job).ok
    assert Profile.objects.filter(pk__in=population.doomed).count() == 10

    deletion.deletion_resume(job=job, user=alice)
    enqueued.clear()
    assert run(job) == "dispatched"
    assert enqueued == [(job.pk, 0), (job.pk, 1)]
    assert [r.status for r in runners_of(job)] == ["active", "active"]
    assert run(job, runner=0) == "done"
    assert run(job, runner=1) == "completed"
    job = state(job)
    assert (job.status, job.deleted) == ("completed", 12)
    assert DeletionNotice.objects.filter(job=job).count() == 2  # one per ending
    assert deletion_verify(job=job).ok


def test_a_runner_that_ended_last_but_died_before_ending_the_job_is_ended_by_its_next_task(
    population, alice, two_runners, enqueued
):
    job = start(population, alice)
    run(job)
    for runner in (0, 1):
        while deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=runner).handled:
            pass
    DeletionRunner.objects.filter(job=job).update(status="done")
    assert state(job).is_active
    # The watchdog enqueues the job itself: with no runner left working, it ends it.
    enqueued.clear()
    assert run(job) == "dispatched"
    assert enqueued == []
    assert state(job).status == "completed"
    assert DeletionNotice.objects.filter(job=job).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_runner_batch_rolls_back_if_the_job_ended_while_it_ran(
    population, alice, two_runners, enqueued, monkeypatch
):
    """Another runner (or the watchdog) failed the job meanwhile: nothing is
    erased after a job's ending."""
    job = start(population, alice)
    run(job)
    with connection.cursor() as cursor:
        # The batch's erasure takes a second, long enough for the job to end.
        cursor.execute(
            """
            CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
            CREATE TRIGGER slow_delete AFTER DELETE ON profiles_profile
                FOR EACH STATEMENT EXECUTE FUNCTION slow_delete();
            """
        )

    def fail_the_job_meanwhile():
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                for _ in range(200):
                    cursor.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                        "AND query LIKE 'SELECT * FROM pg_temp.vero_batch_%%'"
                    )
                    if cursor.fetchone():
                        break
                    time.sleep(0.02)
                cursor.execute(
                    "UPDATE segments_deletionjob SET status = 'failed' WHERE id = %s", [job.pk]
                )
        finally:
            other.close()

    ending = threading.Thread(target=fail_the_job_meanwhile)
    ending.start()
    try:
        with pytest.raises(deletion.JobEnded):
            deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=0)
    finally:
        ending.join()
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER slow_delete ON profiles_profile")
            cursor.execute("DROP FUNCTION slow_delete()")
    assert state(job).status == "failed"
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12
    assert state(job).deleted == 0
    assert runners_of(job)[0].cursor < runners_of(job)[0].low


def test_a_runner_stops_at_its_next_batch_once_another_failed_the_job(
    population, alice, two_runners, enqueued
):
    job = start(population, alice)
    run(job)
    deletion._finish(job.pk, DeletionJob.Status.FAILED, error="Stopped for a test")
    assert run(job, runner=0) == "finished"
    # Running (not yet at its next batch) when the job failed: it stops there.
    DeletionJob.objects.filter(pk=job.pk).update(status="running")
    DeletionJob.objects.filter(pk=job.pk).update(cancel_requested=False)
    assert deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=0).handled == 6
    DeletionJob.objects.filter(pk=job.pk).update(status="failed")
    assert deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=1).cancelled
    assert Profile.objects.filter(pk__in=population.doomed).count() == 6


def test_a_job_begun_by_one_runner_goes_on_with_one(population, alice, enqueued, settings):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
    settings.DELETION_RUNNERS = 2
    assert run(job) == "completed"
    assert not DeletionRunner.objects.exists()
    assert deletion_verify(job=job).ok


def test_an_old_link_to_a_profile_a_runner_deleted_names_the_running_job(
    population, alice, bob, client, two_runners, enqueued
):
    job = start(population, alice)
    run(job)
    first, second = runners_of(job)
    assert run(job, runner=1) == "done"
    assert state(job).status == "running"
    client.force_login(bob)
    erased = next(pk for pk in population.doomed if second.low <= pk <= second.high)
    html = client.get(f"/profiles/{erased}/").content.decode()
    assert "This profile was deleted" in html and population.segment.name in html
    # Runner 0 has not reached its profiles: gone by other means is not blamed on the job.
    untouched = next(pk for pk in population.doomed if first.low <= pk <= first.high)
    Profile.objects.filter(pk=untouched).delete()
    html = client.get(f"/profiles/{untouched}/").content.decode()
    assert "This profile was deleted" not in html


def test_django_admin_shows_a_jobs_runners_read_only(
    population, alice, two_runners, enqueued, admin_client
):
    job = start(population, alice)
    run(job)
    run(job, runner=0)
    response = admin_client.get(f"/admin/segments/deletionjob/{job.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Parallel runners" in page
    first, second = runners_of(job)
    assert (first.status, second.status) == ("done", "active")
    assert "Done" in page and "Working" in page
    assert f"<p>{second.cursor}</p>" in page and f"<p>{second.high}</p>" in page
    # Nothing in it can be changed, added or deleted.
    assert 'name="runners-0-low"' not in page and 'name="runners-0-DELETE"' not in page
    assert 'name="runners-MAX_NUM_FORMS" value="0"' in page  # none can be added
