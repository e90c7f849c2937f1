"""Faults during a segment deletion: real qcluster processes, real PostgreSQL.

Every scenario deletes a couple of thousand profiles interleaved with people
who stay (``insert_population``), while something goes wrong: the cluster is
SIGKILLed, the worker's connection is terminated, the job is delivered
twice, the user confirms twice, data keeps arriving, the segment changes, the
user cancels. Each ends with ``verify_deletion`` and with the survivors' rows
compared byte for byte with a snapshot taken before.

Two ways to reach the middle of a batch on purpose:

- ``batch_held_at(profile)`` holds a lock on one of the profile's events, so
  the batch that reaches it waits inside its transaction, after anonymizing
  its messages and before deleting its events;
- ``slow_storage`` makes every deleted event cost a millisecond, so a job of
  a few thousand profiles takes seconds, in batches of about a hundred, and
  a kill at a random moment lands in the middle of one.

Every scenario runs with one runner and with two parallel runners
(DELETION_RUNNERS=2, ``-k two_runners``); the last ones are about the
runners themselves.
"""

import json
import random
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django_q.models import Task
from django_q.tasks import async_task

from messaging.models import Message, MessageActivity
from profiles.models import Event, Profile, SubscriptionPreference
from segments.deletion import services as deletion
from segments.deletion import watchdog
from segments.deletion.checks import deletion_verify
from segments.deletion.receipts import receipt_entry_count
from segments.deletion.selectors import segment_membership_token
from segments.models import (
    DeletionBatch,
    DeletionJob,
    DeletionJobProfile,
    DeletionNotice,
    DeletionRunner,
    SegmentMembership,
)
from tests.segments.population import activity_counts, insert_population, rows_of
from tests.workers import (
    QCluster,
    cluster_backends,
    row_locked,
    terminate_backend,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DOOMED, SURVIVORS = 2000, 1000
STALE_AFTER = 2
# A task lost with its worker is handed out again Q_RETRY seconds after it
# was first handed out; short here, so a scenario takes seconds.
CLUSTER = {
    "workers": 2,
    "timeout": 6,
    "retry": 7,
    "slice_seconds": 1,
    "extra_env": {"DELETION_STALE_AFTER_SECONDS": str(STALE_AFTER)},
}
# A batch is one call of the batch function (segments.deletion.batch), which
# erases with the function generated from the erasure plan; a batch waiting
# on the held event row is waiting in that call.
EVENT_DELETE = "SELECT * FROM pg_temp.vero_batch_"


@pytest.fixture(autouse=True, params=[1, 2], ids=["one_runner", "two_runners"])
def runners(request):
    """DELETION_RUNNERS for the cluster and for this process (the watchdog)."""
    return request.param


@pytest.fixture(autouse=True)
def runners_setting(runners, settings):
    settings.DELETION_RUNNERS = runners


@pytest.fixture(autouse=True)
def stale_quickly(settings):
    """The watchdog called from the test judges staleness as the cluster does."""
    settings.DELETION_STALE_AFTER_SECONDS = STALE_AFTER


@pytest.fixture
def population():
    return insert_population(doomed=DOOMED, survivors=SURVIVORS)


@dataclass
class Before:
    survivors: dict
    activity: dict
    counters: dict


def counters_for(profile_ids) -> dict:
    """What an exact job records for these profiles."""
    ids = list(profile_ids)
    return {
        "events_deleted": Event.objects.filter(profile_id__in=ids).count(),
        "preferences_deleted": SubscriptionPreference.objects.filter(profile_id__in=ids).count(),
        "memberships_deleted": SegmentMembership.objects.filter(profile_id__in=ids).count(),
        "messages_anonymized": Message.objects.filter(profile_id__in=ids).count(),
        "activity_anonymized": MessageActivity.objects.filter(profile_id__in=ids).count(),
    }


@pytest.fixture
def before(population):
    return Before(rows_of(population.survivors), activity_counts(), counters_for(population.doomed))


@pytest.fixture
def cluster(runners):
    env = {**CLUSTER["extra_env"], "DELETION_RUNNERS": str(runners)}
    cluster = QCluster(**{**CLUSTER, "extra_env": env})
    yield cluster
    cluster.kill()
    wait_for(lambda: not cluster_backends(), timeout=30, message="the cluster's sessions to end")


@pytest.fixture
def slow_storage(runners):
    """Every deleted event costs about a millisecond, as on a large, cold table
    (pg_sleep's floor is about that, whatever it is asked for); with two
    runners, two milliseconds, so the job takes as long as with one and a
    kill at a random moment still lands in its middle."""
    seconds = 0.0001 if runners == 1 else 0.001 * runners
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION fault_slow_delete() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep({seconds}); RETURN OLD; END $$;
            CREATE TRIGGER fault_slow_delete BEFORE DELETE ON profiles_event
            FOR EACH ROW EXECUTE FUNCTION fault_slow_delete();
            """
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER fault_slow_delete ON profiles_event; DROP FUNCTION fault_slow_delete();"
        )


def confirm(population, user, expected_count=None) -> DeletionJob:
    return deletion.deletion_start(
        segment=population.segment,
        user=user,
        typed_name=population.segment.name,
        expected_count=len(population.doomed) if expected_count is None else expected_count,
    ).job


def state(job) -> DeletionJob:
    return DeletionJob.objects.get(pk=job.pk)


def wait_for_status(job, *statuses, timeout=60) -> DeletionJob:
    return wait_for(
        lambda: DeletionJob.objects.filter(pk=job.pk, status__in=statuses).first(),
        timeout=timeout,
        message=f"job {job.pk} to be {' or '.join(statuses)}",
    )


def wait_for_progress(job, handled_before: int) -> DeletionJob:
    def moved():
        now = state(job)
        return now if now.handled > handled_before or not now.is_active else None

    return wait_for(moved, timeout=30, message="the job to move on")


@contextmanager
def batch_held_at(profile_id):
    """The batch that reaches this profile waits in the middle of its transaction."""
    event_id = Event.objects.filter(profile_id=profile_id).values_list("pk", flat=True)[:1].get()
    with row_locked("profiles_event", event_id):
        yield


def wait_for_held_runner() -> int:
    pids = wait_for(
        lambda: cluster_backends(waiting_on_lock=True, query_prefix=EVENT_DELETE),
        timeout=30,
        message="a batch waiting on the held event",
    )
    return pids[0]


def wait_for_sessions_to_end():
    """A killed worker's session lives on until its statement ends, then rolls back."""
    wait_for(lambda: not cluster_backends(), timeout=30, message="the dead cluster's sessions")


def verify(job) -> str:
    out = StringIO()
    call_command("verify_deletion", str(job.pk), stdout=out)
    return out.getvalue()


def assert_rolled_back(profile_id):
    """Nothing of the held batch is committed: the profile, its events and its
    messages' personal data are all still there."""
    assert Profile.objects.filter(pk=profile_id).exists()
    assert Event.objects.filter(profile_id=profile_id).exists()
    assert Message.objects.filter(profile_id=profile_id).exclude(recipient_email="").exists()


def without_memberships_of(rows: dict, segment) -> dict:
    """rows_of without the membership rows of one segment."""
    table = "segments_segmentmembership"
    kept = [row for row in rows[table] if json.loads(row)["segment_id"] != segment.pk]
    return {**rows, table: kept}


def assert_completed_exactly(job, population, before, *, segment_changed=False):
    job = state(job)
    assert job.status == DeletionJob.Status.COMPLETED, (job.status, job.error)
    assert (job.total, job.deleted, job.skipped) == (DOOMED, DOOMED, 0)
    assert {name: getattr(job, name) for name in before.counters} == before.counters
    assert verify(job).rstrip().endswith("Every check passed.")
    survivors_now = rows_of(population.survivors)
    if segment_changed:
        assert without_memberships_of(survivors_now, population.segment) == (
            without_memberships_of(before.survivors, population.segment)
        )
    else:
        assert survivors_now == before.survivors
    assert activity_counts() == before.activity
    # One ending, one email, however many runners and interruptions.
    assert DeletionNotice.objects.filter(job=job).count() == 1
    return job


# --- 1. SIGKILL ------------------------------------------------------------------


def test_sigkill_at_random_points_then_a_restart_completes_the_job(
    population, before, alice, cluster, slow_storage
):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    job = confirm(population, alice)

    # In the middle of a batch that has anonymized messages and waits to delete events.
    held = population.doomed[len(population.doomed) // 4]
    with batch_held_at(held):
        cluster.start()
        wait_for_held_runner()
        cluster.kill()
    wait_for_sessions_to_end()
    assert_rolled_back(held)
    assert deletion_verify(job=job).ok
    # Nothing re-enqueues the job: the ORM broker hands the lost task out again.
    cluster.start()
    wait_for_progress(job, state(job).handled)

    # Then at random moments: starting up, mid-batch, between batches or slices.
    kills = 1
    while kills < 4 and state(job).is_active:
        time.sleep(rng.uniform(0.2, 2.5))
        cluster.kill()
        kills += 1
        wait_for_sessions_to_end()
        killed = state(job)
        report = deletion_verify(job=killed)
        assert report.ok, (seed, report.failures)
        if killed.is_active:
            # The watchdog resumes it without waiting for the broker.
            time.sleep(STALE_AFTER + 0.2)
            assert watchdog.deletion_watchdog() == [job.pk]
        cluster.start()

    wait_for_status(job, "completed", "failed", timeout=60)
    done = assert_completed_exactly(job, population, before)
    assert kills >= 3, f"the job ended before three kills (seed {seed})"
    # Interrupted, but never MAX_ATTEMPTS times in a row without progress.
    assert done.interruptions >= 1 and done.attempts < deletion.MAX_ATTEMPTS


# --- 2. pg_terminate_backend -------------------------------------------------------


def test_a_terminated_connection_rolls_the_batch_back_and_the_job_completes(
    population, before, alice, cluster
):
    job = confirm(population, alice)
    held = population.doomed[len(population.doomed) // 2]
    with batch_held_at(held):
        cluster.start()
        assert terminate_backend(wait_for_held_runner())
        # The runner counts the crash and enqueues itself again; the next
        # runner waits on the same event. (Counted as an interruption: with
        # two runners, the other one's next batch is progress and sets
        # attempts back to 0, possibly before this looks.)
        wait_for(
            lambda: state(job).interruptions == 1, timeout=30, message="the crash to be counted"
        )
        assert_rolled_back(held)
        assert deletion_verify(job=job).ok
    done = assert_completed_exactly(wait_for_status(job, "completed", "failed"), population, before)
    assert (done.interruptions, done.attempts) == (1, 0)
    assert "Lost the database connection" in done.error


# --- 3. the same job delivered twice -----------------------------------------------


def test_a_job_enqueued_twice_at_once_has_one_runner(
    population, before, alice, cluster, monkeypatch
):
    monkeypatch.setattr(deletion, "deletion_enqueue", lambda **kwargs: None)
    job = confirm(population, alice)
    held = population.doomed[len(population.doomed) // 2]
    with batch_held_at(held):
        async_task("segments.tasks.run_deletion_job", job.pk)
        async_task("segments.tasks.run_deletion_job", job.pk)
        cluster.start()
        wait_for_held_runner()
        # The other worker took the duplicate, found the job's lock taken and left.
        wait_for(
            lambda: Task.objects.filter(func="segments.tasks.run_deletion_job", result="busy"),
            timeout=30,
            message="the duplicate delivery to exit",
        )
        assert len(cluster_backends(waiting_on_lock=True, query_prefix=EVENT_DELETE)) <= 1
    done = assert_completed_exactly(wait_for_status(job, "completed", "failed"), population, before)
    assert done.interruptions == 0


# --- 4. the user confirms twice ----------------------------------------------------


def test_two_confirmations_at_once_start_one_job(population, before, alice, cluster, monkeypatch):
    """Both requests find no running job, then both try to create one: the
    partial unique index lets one in, and the other returns that one."""
    barrier = threading.Barrier(2, timeout=10)
    real_active_job = deletion.deletion_active_job
    met = []

    def at_the_same_time(*, segment):
        found = real_active_job(segment=segment)
        if found is None:
            barrier.wait()
            met.append(segment.pk)
        return found

    monkeypatch.setattr(deletion, "deletion_active_job", at_the_same_time)
    responses = []

    population.segment.refresh_from_db()
    token = segment_membership_token(population.segment)

    def click():
        try:
            client = Client()
            client.force_login(alice)
            responses.append(
                client.post(
                    f"/segments/{population.segment.pk}/delete-profiles/",
                    {
                        "typed_name": population.segment.name,
                        "expected_count": DOOMED,
                        "membership_token": token,
                    },
                )
            )
        finally:
            connections.close_all()

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(30)
    monkeypatch.undo()

    assert [response.status_code for response in responses] == [302, 302]
    # Both passed the view's check and deletion_start's, before either created a job.
    assert len(met) == 4
    job = DeletionJob.objects.get()
    assert DeletionJobProfile.objects.filter(job=job).count() == DOOMED
    cluster.start()
    assert_completed_exactly(wait_for_status(job, "completed", "failed"), population, before)
    assert DeletionJob.objects.count() == 1


# --- 5. ingestion throughout the job -----------------------------------------------


def test_ingestion_during_the_job_never_fails_and_survivors_keep_their_events(
    population, alice, cluster, slow_storage
):
    from profiles.services import api_key_create

    _, key = api_key_create(name="Fault suite", scope="full")
    user_ids = dict(
        Profile.objects.filter(pk__in=population.doomed + population.survivors).values_list(
            "pk", "user_id"
        )
    )
    survivors_before = rows_of(population.survivors)
    job = confirm(population, alice)
    stop = threading.Event()
    failures, sent_to_survivors = [], []

    def ingest(worker: int):
        rng = random.Random(worker)
        client = Client()
        n = 0
        try:
            while not stop.is_set():
                n += 1
                survivor = rng.random() < 0.5
                pk = rng.choice(population.survivors if survivor else population.doomed)
                name = f"fault_{worker}_{n}"
                if n % 3:
                    body = {"identity": {"id": user_ids[pk]}, "event_name": name, "data": {}}
                    path = "/api/v2/events/track"
                else:
                    body = {"id": user_ids[pk], "data": {"seen": n}}
                    path = "/api/v2/users/track"
                response = client.post(
                    path, {**body, "tracking_api_key": key}, content_type="application/json"
                )
                if response.status_code != 200:
                    failures.append((path, response.status_code, response.content))
                elif survivor and path.endswith("events/track"):
                    sent_to_survivors.append((pk, name))
        finally:
            connections.close_all()

    ingesters = [threading.Thread(target=ingest, args=(worker,)) for worker in range(3)]
    for thread in ingesters:
        thread.start()
    try:
        cluster.start()
        wait_for_status(job, "completed", "failed", timeout=90)
    finally:
        stop.set()
        for thread in ingesters:
            thread.join(30)

    assert not failures, failures[:5]
    assert len(sent_to_survivors) > 50
    job = state(job)
    assert job.status == "completed" and (job.deleted, job.skipped) == (DOOMED, 0)
    assert verify(job).rstrip().endswith("Every check passed.")
    kept = set(Event.objects.filter(name__startswith="fault_").values_list("profile_id", "name"))
    assert set(sent_to_survivors) <= kept
    after = rows_of(population.survivors)
    for table in ("profiles_subscriptionpreference", "segments_segmentmembership"):
        assert after[table] == survivors_before[table]
    for table in ("messaging_message", "messaging_messageactivity", "profiles_event"):
        assert set(survivors_before[table]) <= set(after[table])
    assert len(after["profiles_profile"]) == SURVIVORS


# --- 6. the segment changes under the job ------------------------------------------


def test_rules_edited_and_refreshed_during_the_job_leave_its_set_unchanged(
    population, before, alice, cluster
):
    from segments.services import segment_refresh, segment_update

    job = confirm(population, alice)
    everyone = {
        "match": "all",
        "conditions": [{"type": "property", "field": "plan", "operator": "exists"}],
    }
    held = population.doomed[len(population.doomed) // 2]
    with batch_held_at(held):
        cluster.start()
        wait_for_held_runner()
        segment = population.segment
        segment_update(segment=segment, name=segment.name, description="all", rules=everyone)
        refreshed = SegmentMembership.objects.filter(
            segment=segment, profile_id__in=population.survivors
        )
        wait_for(
            lambda: _refresh(segment_refresh, segment) and refreshed.count() == SURVIVORS,
            timeout=30,
            message="the refresh to add the survivors",
        )
    done = assert_completed_exactly(
        wait_for_status(job, "completed", "failed"), population, before, segment_changed=True
    )
    assert DeletionJobProfile.objects.filter(job=done).count() == DOOMED
    assert Profile.objects.filter(pk__in=population.survivors).count() == SURVIVORS
    members = SegmentMembership.objects.filter(segment=population.segment)
    assert set(members.values_list("profile_id", flat=True)) == set(population.survivors)
    population.segment.refresh_from_db()
    assert population.segment.member_count == SURVIVORS


def _refresh(segment_refresh, segment) -> bool:
    from segments.services import SegmentRefreshInProgress

    with suppress(SegmentRefreshInProgress):  # the cluster's own refresh task has it
        segment_refresh(segment=segment)
    return True


# --- 7. cancel, then delete the rest -----------------------------------------------


def test_cancel_mid_job_then_a_new_deletion_deletes_the_rest(
    population, before, alice, cluster, slow_storage
):
    first = confirm(population, alice)
    cluster.start()
    wait_for(lambda: state(first).handled > 0, timeout=30, message="a first batch")
    # Waits, at most, for the batch in progress (it holds the job's row).
    deletion.deletion_cancel(job=first, user=alice)
    first = wait_for_status(first, "cancelled", "completed", "failed")
    assert first.status == "cancelled"
    assert verify(first).rstrip().endswith("Every check passed.")
    remaining = Profile.objects.filter(pk__in=population.doomed).count()
    assert 0 < remaining < DOOMED
    assert first.deleted == DOOMED - remaining

    # The stopped deletion stays open until someone decides: close it (keep
    # the rest for now), then a new deletion of the segment deletes them.
    deletion.deletion_close(job=first, user=alice)
    second = confirm(
        population,
        alice,
        expected_count=deletion.deletion_current_count(segment=population.segment),
    )
    second = wait_for_status(second, "completed", "failed")
    assert (second.total, second.deleted, second.skipped) == (remaining, remaining, 0)
    assert verify(second).rstrip().endswith("Every check passed.")
    assert not Profile.objects.filter(pk__in=population.doomed).exists()
    assert rows_of(population.survivors) == before.survivors
    assert activity_counts() == before.activity


# --- 8. parallel runners -------------------------------------------------------------

ONLY_TWO = pytest.mark.parametrize("runners", [2], ids=["two_runners"])


def runners_of(job) -> list[DeletionRunner]:
    return list(DeletionRunner.objects.filter(job=job).order_by("number"))


@ONLY_TWO
def test_two_runners_work_at_once_over_disjoint_ranges_that_cover_the_snapshot(
    population, before, alice, cluster, slow_storage
):
    job = confirm(population, alice)
    cluster.start()
    both = wait_for(
        lambda: (
            state(job).is_active
            and all(0 < runner.handled < runner.total for runner in runners_of(job))
            and runners_of(job)
        ),
        timeout=30,
        message="both runners part-way at once",
    )
    assert len(both) == 2
    done = assert_completed_exactly(wait_for_status(job, "completed", "failed"), population, before)
    first, second = runners_of(done)
    snapshot = sorted(
        DeletionJobProfile.objects.filter(job=job).values_list("profile_id", flat=True)
    )
    assert (first.low, second.high) == (snapshot[0], snapshot[-1])
    assert first.high < second.low
    assert first.total + second.total == DOOMED == first.handled + second.handled
    assert [first.status, second.status] == ["done", "done"]
    assert receipt_entry_count(job.pk) == DOOMED


@ONLY_TWO
def test_a_cancel_stops_both_runners(population, alice, cluster, slow_storage):
    job = confirm(population, alice)
    cluster.start()
    wait_for(
        lambda: len([r for r in runners_of(job) if r.handled]) == 2,
        timeout=30,
        message="a batch of each runner",
    )
    deletion.deletion_cancel(job=job, user=alice)
    job = wait_for_status(job, "cancelled", "completed", "failed")
    assert job.status == "cancelled"
    assert [runner.status for runner in runners_of(job)] == ["stopped", "stopped"]
    left = Profile.objects.filter(pk__in=population.doomed).count()
    assert left > 0 and job.deleted == DOOMED - left
    time.sleep(1.5)  # a runner still going would have deleted more by now
    assert Profile.objects.filter(pk__in=population.doomed).count() == left
    assert state(job).deleted == DOOMED - left
    assert verify(job).rstrip().endswith("Every check passed.")
    assert DeletionNotice.objects.filter(job=job).count() == 1


@ONLY_TWO
def test_a_killed_runner_is_resumed_by_the_watchdog_without_redoing_or_skipping(
    population, before, alice, cluster
):
    job = confirm(population, alice)
    # In the second runner's range: its batch waits there, mid-transaction.
    held = sorted(population.doomed)[DOOMED * 3 // 4]
    with batch_held_at(held):
        cluster.start()
        wait_for_held_runner()
        cluster.kill()
    wait_for_sessions_to_end()
    assert_rolled_back(held)
    killed = state(job)
    assert killed.is_active and deletion_verify(job=killed).ok
    assert held > runners_of(job)[1].cursor
    time.sleep(STALE_AFTER + 0.2)
    assert watchdog.deletion_watchdog() == [job.pk]
    cluster.start()
    done = assert_completed_exactly(wait_for_status(job, "completed", "failed"), population, before)
    assert done.interruptions >= 1
    # Nothing done twice: one receipt entry per profile, one logged batch row per profile.
    assert receipt_entry_count(job.pk) == DOOMED
    logged = DeletionBatch.objects.filter(job=job).values_list("profiles", flat=True)
    assert sum(logged) == DOOMED
