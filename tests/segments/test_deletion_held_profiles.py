"""A profile that another session keeps locked cannot stall a deletion: the
job deletes the others, comes back to it, says who holds it, and after a
bounded wait stops with that reason so an Editor can resume later."""

import threading
from contextlib import contextmanager

import pytest
from django.db import connections

from profiles.models import Profile
from segments.deletion import services as deletion
from segments.deletion.checks import deletion_verify
from segments.models import DeletionJob, Segment
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def profile_held(profile_id, *, application_name="nightly-report", mode="FOR UPDATE"):
    """An idle-in-transaction session of another program holding one profile."""
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [application_name])
            cursor.execute(f"SELECT 1 FROM profiles_profile WHERE id = %s {mode}", [profile_id])
        yield
    finally:
        other.rollback()
        other.close()


def start(population, user):
    return deletion.deletion_start(
        segment=population.segment,
        user=user,
        typed_name=population.segment.name,
        expected_count=len(population.doomed),
    ).job


def test_a_held_profile_is_set_aside_and_the_others_are_deleted(alice):
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    held = sorted(population.doomed)[0]
    with profile_held(held):
        batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=100)
    assert (batch.handled, batch.waiting) == (6, 1)
    job.refresh_from_db()
    assert job.deferred_profile_ids == [held]
    assert job.deleted == 5
    assert list(Profile.objects.filter(pk__in=population.doomed).values_list("pk", flat=True)) == [
        held
    ]
    # verify_deletion accepts a job whose set-aside profile still exists...
    assert deletion_verify(job=job).ok
    # ...and the next batch comes back to it once it is free.
    batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=100)
    assert (batch.handled, batch.waiting) == (1, 0)
    job.refresh_from_db()
    assert (job.deleted, job.deferred_profile_ids) == (6, [])
    assert not Profile.objects.filter(pk__in=population.doomed).exists()


def test_a_job_waiting_on_a_held_profile_says_who_holds_it_then_stops_with_the_reason(
    alice, settings
):
    settings.DELETION_LOCK_WAIT_SECONDS = 2
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    held = sorted(population.doomed)[3]
    seen_waiting = []
    real_wait = deletion._wait_for_held_profiles

    def watching_wait(job_id):
        failed = real_wait(job_id)
        seen_waiting.append(DeletionJob.objects.get(pk=job_id).waiting_for)
        return failed

    deletion._wait_for_held_profiles = watching_wait
    try:
        with profile_held(held, application_name="nightly-report"):
            outcome = deletion.deletion_run(job_id=job.pk, slice_seconds=30)
    finally:
        deletion._wait_for_held_profiles = real_wait

    assert outcome == "failed"
    assert seen_waiting and "nightly-report" in seen_waiting[0]
    assert "idle in transaction" in seen_waiting[0]
    job.refresh_from_db()
    assert job.status == DeletionJob.Status.FAILED
    assert "nightly-report" in job.error and "Resume" in job.error
    assert "Every other profile was deleted" in job.error
    assert job.deleted == 5 and job.deferred_profile_ids == [held]
    assert deletion_verify(job=job).ok

    # Once the other program has finished, an Editor resumes and it ends.
    deletion.deletion_resume(job=job, user=alice)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "completed"
    job.refresh_from_db()
    assert (job.deleted, job.deferred_profile_ids, job.waiting_for) == (6, [], "")
    assert not Profile.objects.filter(pk__in=population.doomed).exists()
    assert deletion_verify(job=job).ok


def test_a_profile_freed_while_the_job_waits_is_deleted_and_the_job_completes(alice, settings):
    settings.DELETION_LOCK_WAIT_SECONDS = 60
    population = build_population(doomed=4, survivors=2, events_each=1)
    job = start(population, alice)
    held = sorted(population.doomed)[1]
    locked, release = threading.Event(), threading.Event()

    def hold():
        with profile_held(held, mode="FOR KEY SHARE"):
            locked.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(5)
    threading.Timer(1.5, release.set).start()
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "completed"
    thread.join()
    job.refresh_from_db()
    assert job.deleted == 4 and not job.waiting_for
    assert deletion_verify(job=job).ok


def test_a_cancel_while_a_profile_is_set_aside_leaves_it_and_says_so(alice):
    population = build_population(doomed=4, survivors=2, events_each=1)
    job = start(population, alice)
    held = sorted(population.doomed)[0]
    with profile_held(held):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=100)
    deletion.deletion_cancel(job=job, user=alice)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=5) == "cancelled"
    job.refresh_from_db()
    assert job.remaining == 1 and Profile.objects.filter(pk=held).exists()


def test_other_segments_that_lost_members_are_recounted_when_the_job_ends(alice):
    population = build_population(doomed=6, survivors=6, events_each=0)
    other = population.other_segment
    Segment.objects.filter(pk=other.pk).update(
        member_count=other.memberships.count(), last_refreshed_at=other.last_refreshed_at
    )
    before = other.memberships.count()
    lost = other.memberships.filter(profile_id__in=population.doomed).count()
    assert lost

    job = start(population, alice)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "completed"

    other.refresh_from_db()
    assert other.member_count == before - lost == other.memberships.count()


def test_free_set_aside_profiles_behind_a_held_one_are_deleted(alice):
    """The retry takes whichever set-aside profiles are free, not the first
    few by id: one held at the front must not hide the others."""
    population = build_population(doomed=6, survivors=2, events_each=0)
    job = start(population, alice)
    first, *others = sorted(population.doomed)
    DeletionJob.objects.filter(pk=job.pk).update(
        cursor=max(population.doomed), deferred_profile_ids=[first, *others]
    )
    with profile_held(first):
        batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
        assert (batch.handled, batch.waiting) == (2, 4)
        batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
        batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
        assert (batch.handled, batch.waiting) == (1, 1)
    job.refresh_from_db()
    assert job.deferred_profile_ids == [first]
    assert list(Profile.objects.filter(pk__in=population.doomed).values_list("pk", flat=True)) == [
        first
    ]


def test_a_new_deletion_is_refused_while_one_stopped_part_way_is_open(alice):
    population = build_population(doomed=3, survivors=1, events_each=0)
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(status="cancelled", deleted=1)
    with pytest.raises(deletion.DeletionRefused, match="Resume it or close it"):
        start(population, alice)
    assert DeletionJob.objects.count() == 1
    deletion.deletion_close(job=job, user=alice)
    assert start(population, alice).pk != job.pk


def test_a_resumed_job_does_not_say_it_has_made_no_progress_since_it_stopped(alice):
    from datetime import timedelta

    from django.utils import timezone

    from segments.deletion.selectors import deletion_progress_context

    population = build_population(doomed=3, survivors=1, events_each=0)
    job = start(population, alice)
    long_ago = timezone.now() - timedelta(hours=5)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="failed", deleted=1, last_progress_at=long_ago, started_at=long_ago
    )
    job = deletion.deletion_resume(job=job, user=alice)
    assert deletion_progress_context(job=job)["stalled_seconds"] is None


def test_with_parallel_runners_a_held_profile_does_not_claim_the_other_runners_share_was_deleted(
    alice, settings, monkeypatch
):
    settings.DELETION_LOCK_WAIT_SECONDS = 1
    settings.DELETION_RUNNERS = 2
    monkeypatch.setattr(deletion, "deletion_enqueue", lambda *, job_id, runner=None: None)
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "dispatched"
    held = sorted(population.doomed)[-1]  # in the second runner's share

    with profile_held(held):
        outcome = deletion.deletion_run(job_id=job.pk, runner=1, slice_seconds=30)

    assert outcome == "failed"
    job.refresh_from_db()
    assert "Every other profile was deleted" not in job.error
    assert "not reached yet" in job.error
    # The first runner's share is untouched, and says so on verification.
    assert Profile.objects.filter(pk__in=sorted(population.doomed)[:3]).count() == 3
    assert deletion_verify(job=job).ok


def test_a_set_aside_profile_erased_later_is_on_the_receipt_and_suppressed(alice):
    """The retry of set-aside profiles runs the batch's steps as separate
    statements: its receipt and suppressions are the same as a batch's."""
    from profiles.models import Suppression
    from segments.deletion.receipts import receipt_entries, receipt_entry_count

    population = build_population(doomed=6, survivors=2, events_each=1)
    job = deletion.deletion_start(
        segment=population.segment,
        user=alice,
        typed_name=population.segment.name,
        expected_count=6,
        suppress=True,
    ).job
    held = sorted(population.doomed)[2]
    digest = Suppression.digest_of(Suppression.Kind.EMAIL, Profile.objects.get(pk=held).email)
    with profile_held(held):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=100)
    assert receipt_entry_count(job.pk) == 5
    assert not Suppression.objects.filter(digest=digest).exists()

    batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=100)

    assert (batch.handled, batch.waiting) == (1, 0)
    job.refresh_from_db()
    assert (job.deleted, job.deferred_profile_ids, job.batches) == (6, [], 2)
    assert receipt_entry_count(job.pk) == 6
    assert digest in {email for _, email in receipt_entries(job.pk)}
    assert Suppression.objects.get(digest=digest).job_id == job.pk
    assert deletion_verify(job=job).ok


def test_with_parallel_runners_a_set_aside_profile_freed_later_is_erased_by_its_runner(
    alice, settings, monkeypatch
):
    settings.DELETION_RUNNERS = 2
    monkeypatch.setattr(deletion, "deletion_enqueue", lambda *, job_id, runner=None: None)
    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "dispatched"
    held = sorted(population.doomed)[-1]  # in the second runner's share
    with profile_held(held):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=1)
    job.refresh_from_db()
    assert (job.deleted, job.deferred_profile_ids) == (2, [held])

    batch = deletion.deletion_run_batch(job_id=job.pk, batch_size=100, runner=1)

    assert (batch.handled, batch.waiting) == (1, 0)
    job.refresh_from_db()
    assert (job.deleted, job.deferred_profile_ids) == (3, [])
    runner = job.runners.get(number=1)
    assert (runner.handled, runner.deferred_profile_ids) == (3, [])
    assert not Profile.objects.filter(pk=held).exists()
    assert deletion.deletion_run(job_id=job.pk, runner=0, slice_seconds=30) == "done"
    assert deletion.deletion_run(job_id=job.pk, runner=1, slice_seconds=30) == "completed"
    assert deletion_verify(job=job).ok


def test_a_batch_of_a_job_or_runner_that_does_not_exist_says_so(alice, settings):
    population = build_population(doomed=2, survivors=1, events_each=1)
    job = start(population, alice)
    with pytest.raises(DeletionJob.DoesNotExist):
        deletion.deletion_run_batch(job_id=job.pk + 1000, batch_size=10)
    with pytest.raises(deletion.DeletionRunner.DoesNotExist):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=10, runner=5)
    assert Profile.objects.filter(pk__in=population.doomed).count() == 2
