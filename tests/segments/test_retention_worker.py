"""Retention schedules through real qcluster processes.

The test process plays the dispatcher's clock: it calls
``retention_dispatch(now=...)`` with chosen times (weeks ahead of the real
clock, so the real minute schedule, if a cluster runs it, finds nothing
due), and the clusters run the claimed runs as production does: refresh,
brake, deletion job, ending email. The last test runs the dispatcher
itself in the clusters, on the real clock, four at a time.
"""

import datetime
import time
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from django.db import connections
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task

from profiles.models import Profile
from segments import services as segment_services
from segments.deletion import services as deletion_services
from segments.deletion.checks import deletion_verify
from segments.deletion.receipts import receipt_path
from segments.models import DeletionJob, DeletionNotice, DeletionRunner, RetentionSchedule
from segments.retention import services as retention
from tests.profiles.factories import EventFactory, ProfileFactory
from tests.segments.factories import SegmentFactory
from tests.segments.test_deletion import assert_erased
from tests.segments.test_deletion_notices import (
    assert_names_nobody,
    cluster,
    identifiers_of,
    notices_settled,
    read_emails,
    subject,
)
from tests.workers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRIALS = {
    "match": "all",
    "conditions": [{"type": "property", "field": "plan", "operator": "equals", "value": "trial"}],
}
AT = datetime.time(3, 0)


def clock_start() -> datetime.datetime:
    """A controlled "now", three weeks ahead of the real clock, at noon."""
    ahead = timezone.now() + datetime.timedelta(days=21)
    return ahead.replace(hour=12, minute=0, second=0, microsecond=0)


def people(segment_rules=TRIALS):
    """A refreshed segment of trial users whose membership then goes out of
    date both ways: one member switches to paid (no longer matches), one
    new trial user arrives (matches, not a member yet)."""
    segment = SegmentFactory(name="Old trials", rules=segment_rules)
    members = [ProfileFactory(properties={"plan": "trial"}) for _ in range(3)]
    for profile in members:
        EventFactory(profile=profile)
    leaver = ProfileFactory(properties={"plan": "trial"})
    bystander = ProfileFactory(properties={"plan": "paid"})
    segment_services.segment_refresh(segment=segment)
    Profile.objects.filter(pk=leaver.pk).update(properties={"plan": "paid"})
    newcomer = ProfileFactory(properties={"plan": "trial"})
    return People(segment, [p.pk for p in members], leaver.pk, newcomer.pk, bystander.pk)


class People(NamedTuple):
    segment: object
    members: list[int]
    leaver: int
    newcomer: int
    bystander: int


def schedule_for(segment, user, *, now, max_profiles=100):
    return retention.retention_create(
        segment=segment,
        user=user,
        typed_name=segment.name,
        frequency="daily",
        weekday=None,
        time_of_day=AT,
        max_profiles=max_profiles,
        now=now,
    )


def job_ended(schedule):
    schedule.refresh_from_db()
    return DeletionJob.objects.filter(
        pk=schedule.last_job_id, status__in=["completed", "failed", "cancelled"]
    ).first()


def test_a_schedule_runs_on_time_and_deletes_exactly_the_refreshed_members(tmp_path, alice):
    segment, members, leaver, newcomer, bystander = people()
    doomed = [*members, newcomer]
    identifiers = identifiers_of(doomed)
    now = clock_start()
    schedule = schedule_for(segment, alice, now=now)
    slot = schedule.next_run_at
    assert (slot - now) < datetime.timedelta(days=1) and slot.time() == AT

    with cluster(tmp_path) as worker:
        assert retention.retention_dispatch(now=slot - datetime.timedelta(minutes=1)) == []
        assert retention.retention_dispatch(now=slot) == [(schedule.pk, slot)]
        job = wait_for(lambda: job_ended(schedule), timeout=60, message="the run's job to end")
        wait_for(lambda: read_emails(tmp_path), timeout=30, message="the ending email")
        log = worker.log()
        assert "Traceback" not in log, log

    assert job.status == "completed"
    assert (job.total, job.deleted) == (4, 4)
    assert job.started_by_schedule and job.created_by == alice
    assert_erased(doomed)
    assert Profile.objects.filter(pk__in=[leaver, bystander]).count() == 2
    schedule.refresh_from_db()
    assert schedule.status == "active" and schedule.last_job == job
    assert schedule.last_slot == slot
    assert f"started deletion #{job.pk} of 4 profiles" in schedule.last_run_note
    assert schedule.next_run_at == slot + datetime.timedelta(days=1)
    (ending,) = read_emails(tmp_path)
    assert ending["To"] == "alice@example.com"
    assert subject(ending) == "4 profiles deleted from “Old trials”"
    assert "by your retention schedule of this segment" in " ".join(ending.get_content().split())
    assert_names_nobody(ending, log, identifiers)


def test_a_run_with_two_parallel_runners_deletes_the_refreshed_members_and_tells_the_owner(
    tmp_path, alice, client, settings
):
    """DELETION_RUNNERS=2 in the cluster: the job the schedule starts is cut
    into two runners like a manual one, and its ending (once), email, receipt
    and audit still say that the schedule started it."""
    settings.DELETION_RUNNERS = 2  # this process: the watchdog, as the cluster
    segment, members, leaver, newcomer, bystander = people()
    doomed = [*members, newcomer]
    identifiers = identifiers_of(doomed)
    schedule = schedule_for(segment, alice, now=clock_start())
    slot = schedule.next_run_at

    with cluster(tmp_path, DELETION_RUNNERS="2") as worker:
        assert retention.retention_dispatch(now=slot) == [(schedule.pk, slot)]
        job = wait_for(lambda: job_ended(schedule), timeout=60, message="the run's job to end")
        wait_for(lambda: read_emails(tmp_path), timeout=30, message="the ending email")
        wait_for(lambda: receipt_path(job.pk).exists(), timeout=30, message="the receipt file")
        time.sleep(1)  # room for a second ending or email to show up
        log = worker.log()
        assert "Traceback" not in log, log

    assert (job.status, job.total, job.deleted, job.skipped) == ("completed", 4, 4, 0)
    assert job.started_by_schedule and job.created_by == alice
    runners = list(DeletionRunner.objects.filter(job=job).order_by("number"))
    assert [(r.status, r.total, r.handled) for r in runners] == [("done", 2, 2), ("done", 2, 2)]
    assert_erased(doomed)
    assert Profile.objects.filter(pk__in=[leaver, bystander]).count() == 2
    report = deletion_verify(job=job)
    assert report.ok, report.failures
    assert DeletionNotice.objects.filter(job=job).count() == 1
    (ending,) = read_emails(tmp_path)
    assert ending["To"] == "alice@example.com"
    assert subject(ending) == "4 profiles deleted from “Old trials”"
    assert "by your retention schedule of this segment" in " ".join(ending.get_content().split())
    assert_names_nobody(ending, log, identifiers)
    client.force_login(alice)
    receipt = client.get(f"/segments/deletions/{job.pk}/receipt/")
    assert receipt.status_code == 200
    assert "alice, through their retention schedule" in receipt.content.decode()


@contextmanager
def profile_held(pk):
    """Hold a profile the way an edit does (FOR NO KEY UPDATE), from a
    connection of our own: the refresh still counts it as a member (it only
    needs FOR KEY SHARE), the deletion's batches must leave it for later."""
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT 1 FROM profiles_profile WHERE id = %s FOR NO KEY UPDATE", [pk])
        yield
    finally:
        other.rollback()
        other.close()


def test_a_schedules_job_stopped_by_a_held_profile_resumes_only_its_unfinished_runner(
    tmp_path, alice, admin_user, settings
):
    """Two runners; one profile of the second runner's range is held, so that
    runner waits and the job fails while the first runner is done. Another
    Editor resumes: the audit says who, the done runner is not run again,
    the other finishes, and the owner gets one email per ending."""
    settings.DELETION_RUNNERS = 2
    segment, members, leaver, newcomer, bystander = people()
    doomed = [*members, newcomer]
    schedule = schedule_for(segment, alice, now=clock_start())
    slot = schedule.next_run_at

    with cluster(tmp_path, DELETION_RUNNERS="2") as worker:
        # The newcomer has the highest id: the second runner's range.
        with profile_held(newcomer):
            retention.retention_dispatch(now=slot)
            job = wait_for(lambda: job_ended(schedule), timeout=60, message="the job to fail")
            wait_for(lambda: notices_settled(job, 1), timeout=30, message="the first email")
        assert job.status == "failed" and job.remaining == 1
        first, second = DeletionRunner.objects.filter(job=job).order_by("number")
        assert (first.status, first.handled) == ("done", 2)
        assert (second.status, second.handled, second.deferred_profile_ids) == (
            "active",
            1,
            [newcomer],
        )
        report = deletion_verify(job=job)
        assert report.ok, report.failures
        # The runner that ended the job writes the receipt file last, holding
        # the job's lock shared; a resume before it lets go would wait for the
        # watchdog (the job's task finds the lock taken and exits).
        wait_for(lambda: receipt_path(job.pk).exists(), timeout=30, message="the receipt file")
        time.sleep(0.5)

        deletion_services.deletion_resume(job=job, user=admin_user)
        wait_for(
            lambda: DeletionJob.objects.filter(pk=job.pk, status="completed").exists(),
            timeout=60,
            message="the job to complete",
        )
        wait_for(lambda: notices_settled(job, 2), timeout=30, message="the second email")
        time.sleep(1)
        log = worker.log()
        assert "Traceback" not in log, log

    job.refresh_from_db()
    assert (job.status, job.deleted, job.skipped) == ("completed", 4, 0)
    assert job.created_by_username == "alice"
    assert job.resumed_by_username == admin_user.get_username()
    assert job.started_by_schedule and job.resumed_at is not None
    again_first, again_second = DeletionRunner.objects.filter(job=job).order_by("number")
    assert (again_first.status, again_first.batches) == ("done", first.batches)
    assert (again_second.status, again_second.handled) == ("done", 2)
    assert_erased(doomed)
    assert Profile.objects.filter(pk__in=[leaver, bystander]).count() == 2
    report = deletion_verify(job=job)
    assert report.ok, report.failures
    failed, completed = read_emails(tmp_path)
    assert [m["To"] for m in (failed, completed)] == ["alice@example.com"] * 2
    assert subject(completed) == "4 profiles deleted from “Old trials”"


def test_the_brake_pauses_without_deleting_and_emails_the_owner(tmp_path, alice):
    crowd = people()
    segment = crowd.segment
    identifiers = identifiers_of([*crowd.members, crowd.newcomer])
    now = clock_start()
    schedule = schedule_for(segment, alice, now=now, max_profiles=3)
    slot = schedule.next_run_at

    with cluster(tmp_path) as worker:
        retention.retention_dispatch(now=slot)
        wait_for(
            lambda: RetentionSchedule.objects.filter(pk=schedule.pk, status="paused").exists(),
            timeout=60,
            message="the brake to pause the schedule",
        )
        wait_for(lambda: read_emails(tmp_path), timeout=30, message="the brake email")
        time.sleep(1)  # room for a deletion or a second email to show up
        log = worker.log()

    assert not DeletionJob.objects.exists()
    assert Profile.objects.count() == 6
    schedule.refresh_from_db()
    assert schedule.brake_found == 4
    assert "found 4 profiles, more than the 3 a run may delete, so nobody was deleted" in (
        schedule.pause_reason
    )
    (brake,) = read_emails(tmp_path)
    assert brake["To"] == "alice@example.com"
    assert subject(brake) == (
        "Automatic deletion from “Old trials” paused: 4 profiles found, more than the 3 allowed"
    )
    assert f"/segments/{segment.pk}/retention/" in brake.get_content()
    assert_names_nobody(brake, log, identifiers)
    # The next minute's dispatcher finds nothing due and sends nothing again.
    assert retention.retention_dispatch(now=slot + datetime.timedelta(days=3)) == []
    assert len(read_emails(tmp_path)) == 1


def test_a_rule_edit_pauses_and_the_dispatcher_then_runs_nothing(alice):
    segment = people().segment
    now = clock_start()
    schedule = schedule_for(segment, alice, now=now)
    wider = {"match": "any", "conditions": [*TRIALS["conditions"], TRIALS["conditions"][0]]}
    segment_services.segment_update(
        segment=segment, name=segment.name, description="", rules=wider, user=alice
    )
    with QCluster():
        assert retention.retention_dispatch(now=schedule.next_run_at) == []
        time.sleep(2)
    assert not DeletionJob.objects.exists()
    schedule.refresh_from_db()
    assert schedule.is_paused and "by alice" in schedule.pause_reason


def test_a_window_missed_while_the_workers_were_down_runs_once(alice):
    segment = people().segment
    now = clock_start()
    schedule = schedule_for(segment, alice, now=now)
    first = schedule.next_run_at
    # No cluster for four and a half days: four slots go by. When the
    # workers are back, the dispatcher runs every minute.
    back = first + datetime.timedelta(days=4, hours=12)
    claims = []
    for minute in range(3):
        claims += retention.retention_dispatch(now=back + datetime.timedelta(minutes=minute))
    assert claims == [(schedule.pk, first)]
    with QCluster():
        wait_for(lambda: job_ended(schedule), timeout=60, message="the one run's job")
        time.sleep(2)  # room for a second run to show up
    assert DeletionJob.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == (first + datetime.timedelta(days=5))
    assert schedule.next_run_at > back


def test_two_clusters_running_the_dispatcher_at_once_start_one_run_per_slot(alice):
    """On the real clock: the slot is a minute past, and four dispatchers
    (two clusters of two workers) take it at the same moment; the run
    task is then delivered a second time, as the ORM broker may."""
    crowd = people()
    segment = crowd.segment
    schedule = schedule_for(segment, alice, now=timezone.now())
    slot = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
    RetentionSchedule.objects.filter(pk=schedule.pk).update(next_run_at=slot)
    with QCluster() as one, QCluster() as two:
        for _ in range(8):
            async_task("segments.tasks.retention_dispatch")
        wait_for(lambda: job_ended(schedule), timeout=60, message="the run's job to end")
        async_task("segments.tasks.run_retention", schedule.pk, slot.isoformat())
        wait_for(lambda: not OrmQ.objects.exists(), timeout=30, message="the queue to be drained")
        time.sleep(2)
        logs = one.log() + two.log()
    assert DeletionJob.objects.count() == 1
    assert "already run" in logs  # the second delivery found its slot taken
    schedule.refresh_from_db()
    assert schedule.next_run_at > slot and schedule.last_slot == slot
    assert not Profile.objects.filter(pk__in=[*crowd.members, crowd.newcomer]).exists()
