import time

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from messaging.models import Message, MessageActivity
from profiles.models import Event, Profile, SubscriptionPreference
from segments.deletion import services as deletion
from segments.deletion import watchdog
from segments.models import DeletionJob, DeletionJobProfile, Segment, SegmentMembership
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentMembershipFactory
from tests.segments.population import activity_counts, build_population, rows_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def population():
    return build_population()


def start(population, user, **kwargs):
    options = {"typed_name": population.segment.name, "expected_count": len(population.doomed)}
    options.update(kwargs)
    return deletion.deletion_start(segment=population.segment, user=user, **options).job


def run_to_end(job):
    outcome = None
    while outcome not in ("completed", "cancelled", "failed"):
        outcome = deletion.deletion_run(job_id=job.pk, slice_seconds=60)
    job.refresh_from_db()
    return outcome


def assert_erased(profile_ids):
    assert not Profile.objects.filter(pk__in=profile_ids).exists()
    assert not Event.objects.filter(profile_id__in=profile_ids).exists()
    assert not SubscriptionPreference.objects.filter(profile_id__in=profile_ids).exists()
    assert not SegmentMembership.objects.filter(profile_id__in=profile_ids).exists()
    assert not Message.objects.filter(profile_id__in=profile_ids).exists()
    assert not MessageActivity.objects.filter(profile_id__in=profile_ids).exists()


def test_it_deletes_exactly_the_segment_and_leaves_everyone_else_untouched(population, alice):
    survivors_before = rows_of(population.survivors)
    counts_before = activity_counts()
    anonymous_before = Message.objects.filter(profile=None).count()

    job = start(population, alice)
    assert run_to_end(job) == "completed"

    assert_erased(population.doomed)
    assert rows_of(population.survivors) == survivors_before
    assert activity_counts() == counts_before
    # The doomed people's sends are still counted, unlinked and without email.
    anonymized = Message.objects.filter(profile=None)
    assert anonymized.count() - anonymous_before == 2 * len(population.doomed)
    assert not anonymized.exclude(recipient_email="").exists()
    assert not MessageActivity.objects.filter(profile=None).exclude(ip_address=None).exists()
    assert not MessageActivity.objects.filter(profile=None).exclude(user_agent="").exists()


def test_the_job_records_what_it_did(population, alice):
    job = start(population, alice)
    run_to_end(job)
    assert job.status == DeletionJob.Status.COMPLETED
    assert (job.total, job.deleted, job.skipped) == (12, 12, 0)
    assert job.events_deleted == 12 * 3
    assert job.preferences_deleted == 12 * 2
    assert job.messages_anonymized == 12 * 2
    assert job.activity_anonymized == 12 * 2 + 6 * 2  # an open per send, clicks from 6 of 12
    assert job.memberships_deleted == 12 + len([i for i in range(24) if i % 3 != 2 and i % 2 == 0])
    assert job.created_by_username == "alice"
    assert job.segment_name == "Trial users"
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.percent_done == 100


def test_the_segment_remains_with_a_count_of_zero(population, alice):
    run_to_end(start(population, alice))
    segment = Segment.objects.get(pk=population.segment.pk)
    assert segment.member_count == 0
    assert segment.name == "Trial users"


def test_the_set_is_frozen_at_confirmation(population, alice):
    job = start(population, alice)
    joiner = ProfileFactory()
    SegmentMembershipFactory(segment=population.segment, profile=joiner)
    population.segment.rules = {"match": "all", "conditions": []}
    population.segment.save()

    run_to_end(job)

    assert Profile.objects.filter(pk=joiner.pk).exists()
    assert job.total == job.deleted == len(population.doomed)


def test_a_profile_deleted_meanwhile_is_counted_as_skipped(population, alice):
    job = start(population, alice)
    Profile.objects.filter(pk=population.doomed[0]).delete()
    run_to_end(job)
    assert (job.total, job.deleted, job.skipped) == (12, 11, 1)


def test_a_wrong_name_deletes_nothing(population, alice):
    # (Doubled or outer spaces do not count: see test_names.py.)
    for typed in ("trial users", "Trial user", "Trial users!", "Tria1 users", ""):
        with pytest.raises(deletion.NameMismatch):
            start(population, alice, typed_name=typed)
    assert not DeletionJob.objects.exists()
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12


def test_a_changed_count_starts_nothing(population, alice):
    SegmentMembershipFactory(segment=population.segment)
    with pytest.raises(deletion.CountChanged) as refused:
        start(population, alice)
    assert refused.value.current_count == 13
    assert not DeletionJob.objects.exists()
    assert not DeletionJobProfile.objects.exists()


def test_a_viewer_cannot_start_a_deletion(population, bob):
    with pytest.raises(PermissionDenied):
        start(population, bob)
    assert not DeletionJob.objects.exists()


def test_a_second_confirmation_returns_the_running_job(population, alice):
    first = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=12
    )
    second = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=12
    )
    assert first.created and not second.created
    assert first.job.pk == second.job.pk
    assert DeletionJob.objects.count() == 1


def test_the_database_allows_one_active_deletion_per_segment(population, alice):
    from django.db import IntegrityError, transaction

    start(population, alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        DeletionJob.objects.create(segment=population.segment, segment_name="x")


def test_a_job_stopped_after_a_few_batches_resumes_to_the_same_end_state(population, alice):
    survivors_before = rows_of(population.survivors)
    job = start(population, alice)
    for _ in range(3):
        handled, *_ = deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
        assert handled == 2
    job.refresh_from_db()
    assert job.deleted == 6 and job.cursor == sorted(population.doomed)[5]
    # Deleted so far: exactly the first six by id.
    assert set(
        Profile.objects.filter(pk__in=population.doomed).values_list("pk", flat=True)
    ) == set(sorted(population.doomed)[6:])

    run_to_end(job)

    assert_erased(population.doomed)
    assert rows_of(population.survivors) == survivors_before
    assert (job.deleted, job.skipped) == (12, 0)


def test_a_batch_that_fails_rolls_back_with_its_cursor(population, alice, monkeypatch):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=4)
    real_batch = deletion.batch_call

    def erase_then_crash(**kwargs):
        assert real_batch(**kwargs).handled == 4  # erased, cursor and counters written
        raise RuntimeError("worker crashed mid-batch")

    monkeypatch.setattr(deletion, "batch_call", erase_then_crash)
    with pytest.raises(RuntimeError):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=4)
    job.refresh_from_db()
    assert job.deleted == 4
    assert Profile.objects.filter(pk__in=population.doomed).count() == 8
    assert Event.objects.filter(profile_id__in=sorted(population.doomed)[4:]).count() == 8 * 3


def test_a_batch_whose_cursor_update_fails_deletes_nothing(population, alice):
    """The cursor and counters move in the batch's own transaction: if that
    update fails, the deletes before it are rolled back with it."""
    job = start(population, alice)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.refuse_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.cursor <> OLD.cursor THEN
                    RAISE EXCEPTION 'cursor update refused';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_cursor BEFORE UPDATE ON segments_deletionjob
                FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_cursor();
            """
        )
    with pytest.raises(Exception, match="cursor update refused"):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=4)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER refuse_cursor ON segments_deletionjob")
    job.refresh_from_db()
    assert (job.cursor, job.deleted) == (0, 0)
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12
    assert Event.objects.filter(profile_id__in=population.doomed).count() == 12 * 3


def test_an_unexpected_error_fails_the_job_with_the_reason(population, alice, monkeypatch):
    job = start(population, alice)

    def broken(**kwargs):
        raise ValueError("disk on fire")

    monkeypatch.setattr(deletion, "batch_call", broken)
    assert deletion.deletion_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == DeletionJob.Status.FAILED
    assert "disk on fire" in job.error
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12


def test_a_failed_jobs_error_and_log_quote_no_row_value(population, alice, monkeypatch, caplog):
    job = start(population, alice)

    def clashing(**kwargs):
        # A real unique violation: psycopg's message carries a DETAIL line
        # naming the clashing value (passed as a parameter, as the code does).
        email = "ada@" + "example.com"
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE clash (email text UNIQUE)")
            cursor.execute("INSERT INTO clash VALUES (%s), (%s)", [email, email])

    monkeypatch.setattr(deletion, "batch_call", clashing)
    with caplog.at_level("DEBUG"):
        assert deletion.deletion_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == DeletionJob.Status.FAILED
    assert job.error.startswith("IntegrityError: duplicate key value violates unique constraint")
    assert "ada@example.com" not in job.error
    logged = caplog.text + "".join(
        str(r.exc_info[1]) for r in caplog.records if r.exc_info and r.exc_info[1]
    )
    assert "duplicate key value" in logged
    assert "clashing" in logged  # the traceback's frames are kept
    assert "ada@example.com" not in logged


def test_a_failed_job_can_be_resumed_by_an_editor(population, alice, bob):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=5)
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", error="boom")
    job.refresh_from_db()
    with pytest.raises(PermissionDenied):
        deletion.deletion_resume(job=job, user=bob)
    deletion.deletion_resume(job=job, user=alice)
    assert run_to_end(job) == "completed"
    assert (job.deleted, job.skipped) == (12, 0)
    assert_erased(population.doomed)


def test_only_a_failed_job_can_be_resumed(population, alice):
    job = start(population, alice)
    with pytest.raises(deletion.DeletionRefused):
        deletion.deletion_resume(job=job, user=alice)


def test_cancel_stops_after_the_current_batch_and_keeps_the_rest(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=5)
    deletion.deletion_cancel(job=job, user=alice)
    assert run_to_end(job) == "cancelled"
    assert job.status == DeletionJob.Status.CANCELLED and job.finished_at
    assert job.cancelled_by_username == "alice"
    assert job.deleted == 5
    assert Profile.objects.filter(pk__in=population.doomed).count() == 7


def test_a_new_deletion_after_cancel_deletes_the_rest(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=5)
    deletion.deletion_cancel(job=job, user=alice)
    run_to_end(job)
    population.segment.refresh_from_db()
    # The membership of the deleted five went with them, and the stored count
    # says so: confirming what the dialog shows now works first time.
    assert population.segment.member_count == 7
    deletion.deletion_close(job=job, user=alice)
    second = start(population, alice, expected_count=population.segment.member_count)
    assert second.pk != job.pk
    run_to_end(second)
    assert_erased(population.doomed)


def test_a_duplicate_delivery_exits_while_a_runner_holds_the_job(population, alice):
    job = start(population, alice)
    # Hold the job's advisory lock from another connection, as a runner would.
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [deletion.ADVISORY_NAMESPACE, job.pk])
        assert deletion.deletion_run(job_id=job.pk) == "busy"
        assert Profile.objects.filter(pk__in=population.doomed).count() == 12
    finally:
        other.close()
    assert run_to_end(job) == "completed"


def test_the_watchdog_resumes_a_job_without_heartbeat(
    population, alice, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert watchdog.deletion_watchdog() == [job.pk]
    assert len(callbacks) == 1  # the job is enqueued again
    job.refresh_from_db()
    assert job.attempts == 1 and job.status == "running"


def test_the_watchdog_fails_a_job_after_too_many_crashes(population, alice):
    from datetime import timedelta

    from django.utils import timezone

    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(
        status="running",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        attempts=deletion.MAX_ATTEMPTS - 1,
    )
    watchdog.deletion_watchdog()
    job.refresh_from_db()
    assert job.status == "failed"
    assert "Stopped after" in job.error and "no heartbeat" in job.error


def test_the_watchdog_leaves_a_fresh_job_alone_and_takes_a_stale_one(population, alice):
    from tests.segments.population import build_population as build

    fresh = start(population, alice)
    deletion.deletion_run_batch(job_id=fresh.pk, batch_size=2)
    other = build(doomed=2, survivors=0, events_each=0, name="Lapsed")
    stale = deletion.deletion_start(
        segment=other.segment, user=alice, typed_name="Lapsed", expected_count=2
    ).job
    _make_stale(stale)
    assert watchdog.deletion_watchdog() == [stale.pk]
    fresh.refresh_from_db()
    assert fresh.attempts == 0 and fresh.error == ""


def test_confirming_enqueues_the_job_on_commit(
    population, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        start(population, alice)
    assert len(callbacks) == 1


def test_snapshot_rows_are_plain_ids_not_a_relation_erasure_would_follow():
    from profiles.models import Profile as P

    related = {rel.related_model for rel in P._meta.related_objects}
    assert DeletionJobProfile not in related
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.table_constraints "
            "WHERE table_name = 'segments_deletionjobprofile' AND constraint_type = 'FOREIGN KEY'"
        )
        assert cursor.fetchone()[0] == 1  # to the job only


def test_a_continuation_starts_at_the_pace_the_job_measured(population, alice, monkeypatch):
    """Each slice (and each resume) is a new task; it must not start again at
    FIRST_BATCH when the job already knows that is too slow, or every slice
    opens with a batch that holds its profiles' locks far too long."""
    monkeypatch.setattr(deletion, "FIRST_BATCH", 4)
    monkeypatch.setattr(deletion, "MIN_BATCH", 1)
    with connection.cursor() as cursor:
        # A slow database: each profile deleted takes 0.1 s (4 profiles: 0.4 s,
        # for a 0.25 s target), inside the batch as the job measures it.
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.1); RETURN OLD; END $$;
            CREATE TRIGGER slow_delete BEFORE DELETE ON profiles_profile
                FOR EACH ROW EXECUTE FUNCTION pg_temp.slow_delete();
            """
        )
    job = start(population, alice)
    for _ in range(2):
        assert deletion.deletion_run(job_id=job.pk, slice_seconds=0.01) == "continued"
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER slow_delete ON profiles_profile")
    sizes = list(job.batch_log.order_by("id").values_list("profiles", flat=True))
    assert sizes == [4, 2]


def test_every_committed_batch_is_logged_with_its_duration(population, alice):
    from segments.models import DeletionBatch

    job = start(population, alice)
    for _ in range(3):
        deletion.deletion_run_batch(job_id=job.pk, batch_size=5)
    job.refresh_from_db()
    batches = list(DeletionBatch.objects.filter(job=job).order_by("id"))
    assert [b.profiles for b in batches] == [5, 5, 2]
    assert job.batches == 3
    assert job.longest_batch_ms == max(b.duration_ms for b in batches)


def test_a_batch_is_one_call_whatever_its_size(population, alice):
    """Round trips are what a batch adds to the erasure (README, "Where a
    batch goes"): the job's row, the lock, the receipt, the erasure and the
    job's update are one call of the batch function, whatever the batch
    holds."""
    from django.test.utils import CaptureQueriesContext

    job = start(population, alice)
    first = sorted(population.doomed)[:8]
    losing = set(
        SegmentMembership.objects.filter(profile_id__in=first).values_list("segment_id", flat=True)
    )
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2)  # creates the functions
    with CaptureQueriesContext(connection) as queries:
        deletion.deletion_run_batch(job_id=job.pk, batch_size=6)
    statements = [q["sql"] for q in queries.captured_queries]
    # The functions are created again in each batch here: a test's
    # transaction never commits, so they are never known to exist.
    ours = [
        s for s in statements if not s.startswith(("CREATE OR REPLACE", "SAVEPOINT", "RELEASE"))
    ]
    assert len(ours) == 1, ours
    assert ours[0].startswith("SELECT * FROM pg_temp.vero_batch_")
    job.refresh_from_db()
    assert (job.deleted, job.batches) == (8, 2)
    # The segments that lost members, as the memberships' DELETE returned them.
    assert set(job.touched_segment_ids) == losing
    assert population.segment.pk in losing


# --- the watchdog, slices and locks: races found in review --------------------


def _other_connection():
    from django.db import connections

    return connections.create_connection("default")


def _make_stale(job, **extra):
    from datetime import timedelta

    from django.utils import timezone

    DeletionJob.objects.filter(pk=job.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=5), **extra
    )


def test_the_watchdog_leaves_a_live_runner_alone_even_with_a_stale_heartbeat(population, alice):
    job = start(population, alice)
    _make_stale(job)
    other = _other_connection()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", deletion._lock_key(job.pk))
        assert watchdog.deletion_watchdog() == []
    finally:
        other.close()
    job.refresh_from_db()
    assert job.attempts == 0 and job.status == "running"


def test_the_watchdog_leaves_a_job_that_ended_while_it_looked(population, alice):
    from datetime import timedelta

    from django.utils import timezone

    job = start(population, alice)
    run_to_end(job)
    stale = timezone.now() + timedelta(minutes=1)
    assert deletion._record_crash(job.pk, "no heartbeat", stale_before=stale) == "finished"
    job.refresh_from_db()
    assert job.status == "completed" and job.attempts == 0 and job.error == ""


def test_a_job_whose_first_task_was_lost_is_started_without_counting_a_crash(
    population, alice, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks() as callbacks:
        assert watchdog.deletion_watchdog() == [job.pk]
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.attempts == 0 and job.status == "pending"


def test_a_continuation_is_enqueued_only_after_the_runner_lets_go(population, alice, monkeypatch):
    job = start(population, alice)
    seen = []

    def enqueue(*, job_id):
        other = _other_connection()
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", deletion._lock_key(job_id))
                seen.append(cursor.fetchone()[0])
        finally:
            other.close()

    monkeypatch.setattr(deletion, "deletion_enqueue", enqueue)
    assert deletion.deletion_run(job_id=job.pk, slice_seconds=0) == "continued"
    assert seen == [True]  # a worker taking the task at once can run it


def test_progress_resets_the_interruption_count(population, alice):
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(attempts=4)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=2)
    job.refresh_from_db()
    assert job.attempts == 0


def test_a_batch_that_meets_a_held_row_lock_retries_smaller_without_a_crash(
    transactional_db, alice
):
    """Someone holds a row the batch must change (here one of a doomed
    profile's events; a held profile is set aside instead, see
    test_deletion_held_profiles): the batch gives up its other locks after
    BATCH_LOCK_TIMEOUT_MS instead of holding them while it waits, and the job
    goes on once the row is free."""
    import threading

    population = build_population(doomed=6, survivors=2, events_each=1)
    job = start(population, alice)
    held = sorted(population.doomed)[-1]
    locked = threading.Event()
    waits = []

    def hold_for_a_while():
        other = _other_connection()
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM profiles_event WHERE profile_id = %s FOR UPDATE", [held])
            locked.set()
            time.sleep(1.6)
            cursor.execute("COMMIT")
        other.close()

    real_batch = deletion.deletion_run_batch

    def counting_batch(**kwargs):
        try:
            return real_batch(**kwargs)
        except Exception as exc:
            waits.append(deletion._sqlstate(exc))
            raise

    thread = threading.Thread(target=hold_for_a_while)
    thread.start()
    assert locked.wait(5)
    deletion.deletion_run_batch = counting_batch
    try:
        assert deletion.deletion_run(job_id=job.pk, slice_seconds=30) == "completed"
    finally:
        deletion.deletion_run_batch = real_batch
    thread.join()
    assert waits and set(waits) == {"55P03"}  # it did meet the lock, and let go
    job.refresh_from_db()
    assert (job.deleted, job.attempts, job.error) == (6, 0, "")
    assert_erased(population.doomed)


def test_a_cancel_after_the_last_batch_completes_the_job(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=100)
    deletion.deletion_cancel(job=job, user=alice)
    assert run_to_end(job) == "completed"
    assert job.deleted == 12


def test_a_cancelled_job_leaves_a_true_member_count(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=4)
    deletion.deletion_cancel(job=job, user=alice)
    run_to_end(job)
    assert Segment.objects.get(pk=population.segment.pk).member_count == 8


def test_resuming_a_failed_job_forgets_an_earlier_cancel_request(population, alice):
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(status="failed", cancel_requested=True)
    job.refresh_from_db()
    deletion.deletion_resume(job=job, user=alice)
    assert run_to_end(job) == "completed"


def test_a_queue_that_refuses_the_task_does_not_undo_the_confirmation(
    population, alice, monkeypatch, django_capture_on_commit_callbacks
):
    import django_q.tasks

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(django_q.tasks, "async_task", broken)
    with django_capture_on_commit_callbacks(execute=True):
        job = start(population, alice)
    assert DeletionJob.objects.get(pk=job.pk).status == "pending"
